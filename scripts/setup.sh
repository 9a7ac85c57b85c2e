#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian 12 machine, and nothing that is already there.
# Idempotent: a second run only checks and prints "ok".
#
#   * Prometheus 2.42 + promtool (Debian package, pinned). Never run as a service: the e2e tests start
#     their own instance on 127.0.0.1 with a private data dir.
#   * <repo>/.venv: a Python venv with the pinned packages of tests/harness/requirements.txt
#     (kmock, the Kubernetes API emulator used by the tests; PyYAML + jsonschema for schema checks).
#
# env: PYTHON=python3 (interpreter for the venv, >= 3.11), PRESCALE_SKIP_APT=1 (never call apt-get).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Upstream 2.42.0, Debian revision 5 and its stable updates (+b6 rebuilds, +deb12uN point releases): the
# archive serves only the newest revision of a release, so an exact "+b6" pin breaks after the next update.
PROMETHEUS_VERSION="2.42.0+ds-5*"
PYTHON="${PYTHON:-python3}"
VENV="$ROOT/.venv"
REQS="$ROOT/tests/harness/requirements.txt"
STAMP="$VENV/.requirements.sha256"

t0=$(date +%s)
say() { echo "[setup] $*"; }

# --- Prometheus + promtool ---------------------------------------------------------------------------
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  say "prometheus: ok, already installed ($(prometheus --version 2>&1 | head -1))"
else
  if [[ "${PRESCALE_SKIP_APT:-}" == 1 ]]; then
    say "prometheus/promtool missing and PRESCALE_SKIP_APT=1: install prometheus=$PROMETHEUS_VERSION yourself" >&2
    exit 1
  fi
  if [[ "$(id -u)" != 0 ]]; then
    say "prometheus/promtool missing; apt-get needs root (run: sudo $0)" >&2
    exit 1
  fi
  t=$(date +%s)
  say "prometheus: installing prometheus=$PROMETHEUS_VERSION from Debian"
  # Debian's policy-rc.d hook: exit 101 forbids maintainer scripts to start services. Only put it in place
  # if the machine has none, and take it away again.
  policy_rc=/usr/sbin/policy-rc.d
  own_policy=0
  if [[ ! -e "$policy_rc" ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy_rc"
    chmod 755 "$policy_rc"
    own_policy=1
  fi
  cleanup_policy() { if [[ "$own_policy" == 1 ]]; then rm -f "$policy_rc"; fi; }
  trap cleanup_policy EXIT
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "prometheus=$PROMETHEUS_VERSION" >/dev/null
  cleanup_policy
  trap - EXIT
  # Belt and braces: if the package's scripts still started the daemon, stop it through its own service.
  if pgrep -u prometheus -x prometheus >/dev/null 2>&1; then
    say "prometheus: the package started a daemon; stopping it (the tests run their own)"
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
      systemctl stop prometheus || true
      systemctl disable prometheus >/dev/null 2>&1 || true
    else
      service prometheus stop >/dev/null 2>&1 || true
    fi
  fi
  case "$(prometheus --version 2>&1 | head -1)" in
    *"version 2.42.0"*) ;;
    *) say "unexpected prometheus version: $(prometheus --version 2>&1 | head -1)" >&2; exit 1 ;;
  esac
  say "prometheus: installed in $(($(date +%s) - t))s ($(prometheus --version 2>&1 | head -1))"
fi
command -v promtool >/dev/null || { say "promtool not found after install" >&2; exit 1; }

# --- Python venv for the Kubernetes API emulator -------------------------------------------------------
want_sha="$(sha256sum "$REQS" | cut -d' ' -f1)"
if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$want_sha" ]] &&
   "$VENV/bin/python" -c 'import kmock, yaml, jsonschema' 2>/dev/null; then
  say "venv: ok, $VENV is up to date ($("$VENV/bin/python" --version), kmock $("$VENV/bin/python" -c 'import kmock; print(kmock.__version__)'))"
else
  t=$(date +%s)
  if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
    say "$PYTHON is missing or older than 3.11 (kmock needs >= 3.11); set PYTHON=/path/to/python3.11+" >&2
    exit 1
  fi
  if [[ ! -x "$VENV/bin/python" ]]; then
    say "venv: creating $VENV with $("$PYTHON" --version)"
    "$PYTHON" -m venv --clear "$VENV"
  else
    say "venv: $VENV exists but its packages differ from $REQS; installing"
  fi
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQS"
  "$VENV/bin/python" -m pip check -q --disable-pip-version-check >/dev/null
  echo "$want_sha" >"$STAMP"
  say "venv: installed $(grep -c '==' "$REQS") pinned packages in $(($(date +%s) - t))s"
fi

say "done in $(($(date +%s) - t0))s"
