#!/usr/bin/env bash
# Validates deploy/ offline: every Kubernetes manifest under deploy/kubernetes/ against the
# bundled schemas of pinned Kubernetes releases, strictly (an unknown or misspelled field is an
# error, as `kubectl apply --validate=strict` makes it); the shell scripts with `bash -n` (and
# shellcheck when it is installed). Then proves the check can fail: deliberately broken
# manifests must be rejected, or this script fails.
#
# Needs the validator from ./tests/servers/setup.sh (kubernetes-validate, pinned in
# tests/servers/requirements.txt, in ./.venv). Called by scripts/test.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# 1.33 is the oldest release the manifests are for (per-index retries, backoffLimitPerIndex, are
# GA from 1.33 on); 1.37 is the newest release the pinned validator bundles, so a field removed
# since 1.33 is caught too.
k8s_versions=(1.33.0 1.37.0)
validator="$root/.venv/bin/kubernetes-validate"
if [ ! -x "$validator" ]; then
  echo "deploy/validate.sh: $validator not found; run ./tests/servers/setup.sh first" >&2
  exit 2
fi

# check_manifest FILE: succeeds only when every document of FILE validates against every pinned
# version. The validator exits 0 with a WARN for a kind or apiVersion it has no schema for (a
# misspelled kind, a custom resource): here that is a failure, as is a file with no resource.
check_manifest() {
  local file="$1" version out status
  for version in "${k8s_versions[@]}"; do
    status=0
    out="$("$validator" --strict --kubernetes-version "$version" "$file" 2>&1)" || status=$?
    if [ "$status" -ne 0 ] || [ -z "$out" ] || grep -qv '^INFO ' <<<"$out"; then
      printf '%s\n' "$out"
      return 1
    fi
  done
  grep -c '^INFO ' <<<"$out"
}

failed=0
mapfile -t manifests < <(find deploy/kubernetes -type f \( -name '*.yaml' -o -name '*.yml' \) | sort)
if [ "${#manifests[@]}" -eq 0 ]; then
  echo "FAIL no manifests found under deploy/kubernetes/" >&2
  exit 1
fi
for file in "${manifests[@]}"; do
  if out="$(check_manifest "$file")"; then
    [ "$out" -eq 1 ] && noun=resource || noun=resources
    echo "ok   $file: $out $noun valid against Kubernetes ${k8s_versions[*]} (strict)"
  else
    echo "FAIL $file:"
    printf '%s\n' "$out" | sed 's/^/     /'
    failed=1
  fi
done

# The self-check: each of these must be rejected by the same check_manifest.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
broken_deployment() { # broken_deployment REPLICAS PULL_POLICY_FIELD [KIND]
  cat <<EOF
apiVersion: apps/v1
kind: ${3:-Deployment}
metadata:
  name: broken
spec:
  replicas: $1
  selector:
    matchLabels: {app: broken}
  template:
    metadata:
      labels: {app: broken}
    spec:
      containers:
        - name: broken
          image: example.invalid/broken:1
          $2: IfNotPresent
EOF
}
broken_deployment 2 imagePullPolicy >"$tmp/control.yaml"
broken_deployment 2 imagePulPolicy >"$tmp/misspelled-field.yaml"
broken_deployment '"two"' imagePullPolicy >"$tmp/wrong-type.yaml"
broken_deployment 2 imagePullPolicy Deploymnet >"$tmp/misspelled-kind.yaml"

# The control differs from the broken ones by one word: it must pass, or the rejections below
# would prove nothing.
if ! out="$(check_manifest "$tmp/control.yaml")"; then
  echo "FAIL self-check: the unbroken control manifest was rejected:"
  printf '%s\n' "$out" | sed 's/^/     /'
  failed=1
fi
for case in misspelled-field wrong-type misspelled-kind; do
  if out="$(check_manifest "$tmp/$case.yaml")"; then
    echo "FAIL self-check: a manifest with a $case was accepted; the validation cannot fail"
    failed=1
  else
    echo "ok   self-check: $case rejected: $(head -1 <<<"$out" | sed "s|$tmp/||")"
  fi
done

# The Slurm script (and this one): syntax always, lint when shellcheck is installed.
scripts=(deploy/slurm/upload-array.sh deploy/validate.sh)
for script in "${scripts[@]}"; do
  if bash -n "$script"; then
    echo "ok   $script: bash -n"
  else
    echo "FAIL $script: bash -n"
    failed=1
  fi
done
if command -v shellcheck >/dev/null; then
  if shellcheck "${scripts[@]}"; then
    echo "ok   shellcheck ${scripts[*]}"
  else
    echo "FAIL shellcheck ${scripts[*]}"
    failed=1
  fi
else
  echo "skip shellcheck (not installed)"
fi

if [ "$failed" -ne 0 ]; then
  echo "deploy/validate.sh: FAILED" >&2
  exit 1
fi
echo "deploy/validate.sh: all checks passed"
