#!/usr/bin/env bash
# Every check CI runs, in order: formatting, clippy (warnings are errors), the chart/examples/workflow checks
# (scripts/check_chart.sh: helm lint, helm template, kubernetes-validate, actionlint), the docs book
# (scripts/check_docs.sh: mdbook build, internal links, README length), and all cargo tests (unit,
# integration, the real-process e2e against a real kube-apiserver + etcd + kube-controller-manager and a real
# Prometheus), then clippy and the tests of the demo gateway crate (gateway/). Runs every step even after a
# failure, then exits non-zero if any failed. Runs scripts/setup.sh first (idempotent: installs Prometheus,
# .venv, helm, kubectl, actionlint and builds the control plane if missing), so this one command works on a
# fresh machine.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi

bash "$ROOT/scripts/setup.sh" || { echo "==> scripts/test.sh: FAILED: scripts/setup.sh"; exit 1; }

disk() { echo "==> disk: $(df -h "$ROOT" | awk 'NR==2 {print $4 " free of " $2}'), target $(du -sh "${CARGO_TARGET_DIR:-$ROOT/target}" 2>/dev/null | cut -f1)"; }
disk

failed=()
passed=()
step() { # step NAME CMD...
  local name="$1"; shift
  echo
  echo "==> $name: $*"
  local t=$SECONDS
  if "$@"; then
    passed+=("$name"); echo "==> $name: ok ($((SECONDS - t))s)"
  else
    failed+=("$name"); echo "==> $name: FAILED ($((SECONDS - t))s)"
  fi
}

TIMINGS="${CARGO_TARGET_DIR:-$ROOT/target}/tmp/test-timings.log"   # appended to by tests/support::report
rm -f "$TIMINGS"

step fmt cargo fmt --check
step clippy cargo clippy --workspace --all-targets -- -D warnings
step chart bash scripts/check_chart.sh
step docs bash scripts/check_docs.sh
# every member: the operator (the root package) and the demo gateway (gateway/)
step cargo-test cargo test --workspace --no-fail-fast

disk
if [[ -s "$TIMINGS" ]]; then
  echo
  echo "==> timings reported by the tests:"
  cat "$TIMINGS"
fi
echo
if [[ ${#failed[@]} -eq 0 ]]; then
  echo "==> scripts/test.sh: all checks passed (${passed[*]})"
else
  echo "==> scripts/test.sh: FAILED: ${failed[*]} (passed: ${passed[*]:-none})"
  exit 1
fi
