#!/usr/bin/env bash
# Builds the upstream Kubernetes the tests run from its Go source modules, at pinned versions: the control
# plane (kube-apiserver, kube-controller-manager, etcd), the way controller-runtime's envtest runs it, and
# the node (kube-scheduler, kubelet) that scripts/cluster.sh runs on containerd, and a Prometheus with
# Kubernetes service discovery.
# Everything comes from the Go module proxy; nothing is committed. The binaries are cached outside the
# repository, so a warm machine rebuilds nothing:
#
#   $PRESCALE_CACHE (default ~/.cache/prescale)/k8s-<K8S_VERSION>-etcd-<ETCD_VERSION>/{kube-apiserver,kube-controller-manager,etcd,
#                                                                                     kube-scheduler,kubelet,prometheus}
#
# Only missing binaries are built. `build_k8s.sh` builds the control plane; `build_k8s.sh node` the node too.
#
# Prints that directory as its last line. Go's module and build caches (GOMODCACHE, GOCACHE) are Go's own.
#
# Why a wrapper module: k8s.io/kubernetes requires its staging modules (k8s.io/api, k8s.io/client-go, ...) at
# the fake version v0.0.0 and replaces them with ./staging paths, and replace lines only apply in the main
# module, so `go install k8s.io/kubernetes/cmd/kube-apiserver@v1.36.3` cannot work. The wrapper module here
# replaces each staging module (read from the proxy's own go.mod of that release) with its published
# v0.<minor>.<patch>. etcd is built in a separate module so that its dependencies cannot move the
# apiserver's etcd client.
#
# env: K8S_VERSION (v1.36.3), ETCD_VERSION (v3.6.16), PRESCALE_CACHE; with CI set, Go's build cache is
# cleaned after the build.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
# Prometheus 3.16 (module versions are v0.3MM.P): Debian's 2.42 is built without Kubernetes service
# discovery, which the node's tests use to find pods the way a Prometheus in a cluster does
PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-v0.316.0}"
CACHE="${PRESCALE_CACHE:-$HOME/.cache/prescale}"
OUT="$CACHE/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"
say() { echo "[build_k8s] $*" >&2; }

K8S_CMDS=(kube-apiserver kube-controller-manager)
if [[ "${1:-}" == node ]]; then K8S_CMDS+=(kube-scheduler kubelet); fi
missing=()
for cmd in "${K8S_CMDS[@]}"; do [[ -x "$OUT/$cmd" ]] || missing+=("$cmd"); done
want_prometheus=0
if [[ "${1:-}" == node && ! -x "$OUT/prometheus" ]]; then want_prometheus=1; fi
if [[ ${#missing[@]} -eq 0 && -x "$OUT/etcd" && "$want_prometheus" == 0 ]]; then
  say "ok, cached in $OUT"
  echo "$OUT"
  exit 0
fi
command -v go >/dev/null || { say "go is not installed (the control plane is built from Go source modules)"; exit 1; }

export CGO_ENABLED=0          # upstream builds kube-apiserver and kube-controller-manager static
export GOTOOLCHAIN=local      # fail loudly rather than fetch another Go
export GOFLAGS="-buildvcs=false"
t0=$(date +%s)
mkdir -p "$OUT"
work="$(mktemp -d "${TMPDIR:-/tmp}/prescale-k8sbuild.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# --- kube-apiserver, kube-controller-manager (and kube-scheduler, kubelet) ------------------------------
if [[ ${#missing[@]} -gt 0 ]]; then
mkdir "$work/k8s" && cd "$work/k8s"
go mod init prescale.dev/k8sbuild >/dev/null 2>&1
staging="v0.${K8S_VERSION#v1.}"   # v1.36.3 -> v0.36.3
kmod="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
[[ -f "$kmod" ]] || { say "could not download k8s.io/kubernetes@$K8S_VERSION's go.mod"; exit 1; }
n=0
for m in $(sed -n 's|^[[:space:]]*\(k8s.io/[^ ]*\) => ./staging/src/k8s.io/.*|\1|p' "$kmod"); do
  go mod edit -replace="$m=$m@$staging"
  n=$((n + 1))
done
say "k8s.io/kubernetes@$K8S_VERSION: $n staging modules replaced at $staging"
godebug="$(sed -n 's/^godebug default=\(.*\)/\1/p' "$kmod")"
if [[ -n "$godebug" ]]; then go mod edit -godebug=default="$godebug"; fi
tools=()
for cmd in "${missing[@]}"; do tools+=("k8s.io/kubernetes/cmd/$cmd@$K8S_VERSION"); done
go get -tool "${tools[@]}" 2>&1 | tail -3 >&2
say "modules resolved in $(($(date +%s) - t0))s"
minor="$(echo "$K8S_VERSION" | cut -d. -f2)"
ldflags="-s -w"
for kv in "gitVersion=$K8S_VERSION" gitMajor=1 "gitMinor=$minor" gitTreeState=clean "buildDate=1970-01-01T00:00:00Z"; do
  ldflags+=" -X k8s.io/component-base/version.$kv -X k8s.io/client-go/pkg/version.$kv"
done
for cmd in "${missing[@]}"; do
  t=$(date +%s)
  go build -trimpath -tags selinux,notest,grpcnotrace -ldflags "$ldflags" -o "$OUT/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd"
  mv "$OUT/$cmd.tmp" "$OUT/$cmd"
  say "$cmd built in $(($(date +%s) - t))s"
done
fi

# --- etcd ----------------------------------------------------------------------------------------------
if [[ ! -x "$OUT/etcd" ]]; then
t=$(date +%s)
mkdir "$work/etcd" && cd "$work/etcd"
go mod init prescale.dev/etcdbuild >/dev/null 2>&1
go get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION" 2>&1 | tail -3 >&2
go build -trimpath -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=goproxy" -o "$OUT/etcd.tmp" go.etcd.io/etcd/server/v3
mv "$OUT/etcd.tmp" "$OUT/etcd"
say "etcd built in $(($(date +%s) - t))s"
fi

# --- prometheus (node) -----------------------------------------------------------------------------------
if [[ "$want_prometheus" == 1 ]]; then
t=$(date +%s)
mkdir "$work/prometheus" && cd "$work/prometheus"
go mod init prescale.dev/prometheusbuild >/dev/null 2>&1
go get -tool "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_VERSION" 2>&1 | tail -3 >&2
# only the Kubernetes service discovery (Prometheus's own build tags): no cloud SDKs to compile
go build -trimpath -tags remove_all_sd,enable_kubernetes_sd -ldflags "-s -w" -o "$OUT/prometheus.tmp" \
  github.com/prometheus/prometheus/cmd/prometheus
mv "$OUT/prometheus.tmp" "$OUT/prometheus"
missing+=(prometheus)
say "prometheus $PROMETHEUS_VERSION built in $(($(date +%s) - t))s"
fi

say "built ${missing[*]:-} (Kubernetes $K8S_VERSION, etcd $ETCD_VERSION) in $(($(date +%s) - t0))s into $OUT"
if [[ -n "${CI:-}" ]]; then
  # a CI machine builds once: Go's build cache (~3 GB) would only take disk the cargo builds need
  go clean -cache
  say "CI: Go's build cache cleaned"
fi
echo "$OUT"
