#!/usr/bin/env bash
# A real Kubernetes control plane on loopback, without a container runtime: etcd, kube-apiserver (TLS,
# RBAC, client-certificate admin) and kube-controller-manager, built by scripts/build_k8s.sh from the Go
# module proxy. There is no scheduler and no kubelet: Deployments get ReplicaSets and Pods, and the Pods
# stay Pending. It is how the tests run against a real API server, and how to try prescale without a cluster.
#
#   scripts/cluster.sh up [DIR]          start it in the background; the last line printed is
#                                        `export KUBECONFIG=DIR/admin.kubeconfig`
#   scripts/cluster.sh down [DIR]        stop everything `up` started and remove DIR
#   scripts/cluster.sh token NS SA [DIR] a kubeconfig for ServiceAccount NS/SA (a TokenRequest token, 24h);
#                                        prints its path (run an operator with the chart's identity)
#   scripts/cluster.sh status [DIR]      which components run
#
# For the test harness (tests/support), which runs each component itself so it dies with the test:
#   scripts/cluster.sh init DIR          certificates, free ports, admin kubeconfig (API_PORT, ETCD_PORT)
#   scripts/cluster.sh argv COMPONENT DIR   the command line of etcd | kube-apiserver |
#                                        kube-controller-manager, one argument per line
#
# DIR defaults to $PRESCALE_CLUSTER_DIR or ${TMPDIR:-/tmp}/prescale-cluster. Needs openssl, curl, python3
# (for free ports) and, for `token`, kubectl (scripts/setup.sh puts one in .tools/bin).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { echo "[cluster] $*" >&2; }
die() { say "$*"; exit 1; }
default_dir() { echo "${PRESCALE_CLUSTER_DIR:-${TMPDIR:-/tmp}/prescale-cluster}"; }
COMPONENTS=(etcd kube-apiserver kube-controller-manager)
# The Service CIDR the API server allocates ClusterIPs from (nothing routes to it here).
SERVICE_CIDR=10.0.0.0/24

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# --- init: PKI, ports, kubeconfig ------------------------------------------------------------------------
# v3 certificates with SANs and key usages (rustls refuses v1 certificates and ignores the CN); the keys are
# PKCS#8, which both Go and rustls read.
init() {
  local dir="$1" pki
  pki="$dir/pki"
  mkdir -p "$pki" "$dir/logs"
  local api_port="${API_PORT:-$(free_port)}" etcd_port="${ETCD_PORT:-$(free_port)}" peer_port
  peer_port="$(free_port)"
  {
    echo "API_PORT=$api_port"
    echo "ETCD_PORT=$etcd_port"
    echo "ETCD_PEER_PORT=$peer_port"
    echo "BIN=$(bash "$ROOT/scripts/build_k8s.sh")"
  } >"$dir/cluster.env"
  (
    cd "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=prescale-test-ca" \
      -keyout ca.key -out ca.crt \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    leaf() { # NAME SUBJECT EKU [SAN]
      openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
      {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=$3"
        if [[ -n "${4:-}" ]]; then echo "subjectAltName=$4"; fi
      } >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
        -extfile "$1.ext" -out "$1.crt" 2>/dev/null
      rm -f "$1.csr" "$1.ext"
    }
    leaf apiserver "/CN=kube-apiserver" serverAuth \
      "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default.svc,IP:127.0.0.1,IP:10.0.0.1"
    leaf admin "/O=system:masters/CN=prescale-admin" clientAuth
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  )
  local b64ca b64crt b64key
  b64ca="$(base64 -w0 "$pki/ca.crt")"
  b64crt="$(base64 -w0 "$pki/admin.crt")"
  b64key="$(base64 -w0 "$pki/admin.key")"
  cat >"$dir/admin.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: prescale-test
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority-data: $b64ca
users:
- name: admin
  user:
    client-certificate-data: $b64crt
    client-key-data: $b64key
contexts:
- name: prescale-test
  context:
    cluster: prescale-test
    user: admin
    namespace: default
current-context: prescale-test
EOF
  chmod 600 "$dir/admin.kubeconfig" "$pki"/*.key
}

load_env() {
  local dir="$1"
  [[ -f "$dir/cluster.env" ]] || die "$dir has no cluster (run: scripts/cluster.sh up $dir)"
  # shellcheck disable=SC1091
  source "$dir/cluster.env"
}

# --- argv: one component's command line -----------------------------------------------------------------
argv() {
  local component="$1" dir="$2"
  load_env "$dir"
  local pki="$dir/pki"
  case "$component" in
    etcd)
      printf '%s\n' "$BIN/etcd" --name=default --data-dir="$dir/etcd-data" \
        --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster="default=http://127.0.0.1:$ETCD_PEER_PORT" \
        --unsafe-no-fsync --log-level=warn
      ;;
    kube-apiserver)
      # envtest's flags, plus a serving certificate of our own and an advertise address (loopback
      # endpoints are refused, hence no endpoint reconciler).
      printf '%s\n' "$BIN/kube-apiserver" \
        --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
        --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
        --endpoint-reconciler-type=none \
        --cert-dir="$pki" --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
        --client-ca-file="$pki/ca.crt" \
        --authorization-mode=RBAC \
        --service-account-issuer="https://127.0.0.1:$API_PORT" \
        --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
        --service-cluster-ip-range="$SERVICE_CIDR" --allow-privileged=true \
        --profiling=false --v=1
      ;;
    kube-controller-manager)
      # No HTTPS endpoint of its own (--secure-port=0), so it needs no delegated authn/authz; the admin
      # identity for its clients; the token controller signs with the API server's key.
      printf '%s\n' "$BIN/kube-controller-manager" \
        --kubeconfig="$dir/admin.kubeconfig" \
        --bind-address=127.0.0.1 --secure-port=0 --leader-elect=false \
        --service-cluster-ip-range="$SERVICE_CIDR" \
        --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
        --profiling=false --v=1
      ;;
    *) die "unknown component $component (${COMPONENTS[*]})" ;;
  esac
}

curl_admin() { # PATH [curl args...]
  local path="$1"; shift
  curl -fsS --max-time 5 --cacert "$DIR/pki/ca.crt" --cert "$DIR/pki/admin.crt" --key "$DIR/pki/admin.key" \
    "$@" "https://127.0.0.1:$API_PORT$path"
}

wait_for() { # WHAT SECONDS CMD...
  local what="$1" secs="$2"; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      return 1
    fi
    sleep 0.3
  done
  say "$what ready after $((SECONDS - t0))s"
}

running() { # COMPONENT
  local pidfile="$DIR/$1.pid"
  [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

start() { # COMPONENT
  local c="$1" cmd
  mapfile -t cmd < <(argv "$c" "$DIR")
  nohup "${cmd[@]}" >"$DIR/logs/$c.log" 2>&1 </dev/null &
  echo $! >"$DIR/$c.pid"
}

up() {
  t0=$SECONDS
  if running kube-apiserver 2>/dev/null; then
    say "already running in $DIR"
    echo "export KUBECONFIG=$DIR/admin.kubeconfig"
    return
  fi
  command -v openssl >/dev/null || die "openssl is missing (apt-get install openssl)"
  command -v curl >/dev/null || die "curl is missing (apt-get install curl)"
  rm -rf "$DIR"
  mkdir -p "$DIR"
  init "$DIR"
  load_env "$DIR"
  start etcd
  wait_for etcd 30 curl -fsS --max-time 2 "http://127.0.0.1:$ETCD_PORT/health" ||
    { tail -20 "$DIR/logs/etcd.log" >&2; die "etcd did not become healthy"; }
  start kube-apiserver
  wait_for kube-apiserver 120 curl_admin /readyz ||
    { tail -30 "$DIR/logs/kube-apiserver.log" >&2; die "kube-apiserver did not become ready (log: $DIR/logs)"; }
  start kube-controller-manager
  # its ServiceAccount controller creates default/default: the sign that it works
  wait_for kube-controller-manager 120 curl_admin /api/v1/namespaces/default/serviceaccounts/default ||
    { tail -30 "$DIR/logs/kube-controller-manager.log" >&2; die "kube-controller-manager did not start"; }
  say "up in $((SECONDS - t0))s: API server https://127.0.0.1:$API_PORT, logs in $DIR/logs; stop with: $0 down $DIR"
  echo "export KUBECONFIG=$DIR/admin.kubeconfig"
}

down() {
  local c pid stopped=()
  for c in kube-controller-manager kube-apiserver etcd; do
    if running "$c"; then
      pid="$(cat "$DIR/$c.pid")"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      stopped+=("$c")
    fi
  done
  if [[ -f "$DIR/cluster.env" ]]; then rm -rf "$DIR"; fi
  say "stopped ${stopped[*]:-nothing}; removed $DIR"
}

status() {
  load_env "$DIR"
  local c
  for c in "${COMPONENTS[@]}"; do
    if running "$c"; then echo "$c: running (pid $(cat "$DIR/$c.pid"))"; else echo "$c: stopped"; fi
  done
  if curl_admin /readyz >/dev/null 2>&1; then echo "API server: ready at https://127.0.0.1:$API_PORT"; fi
}

token() { # NS SA
  local ns="$1" sa="$2" kubectl out tok
  kubectl="$(command -v kubectl || echo "$ROOT/.tools/bin/kubectl")"
  [[ -x "$kubectl" ]] || die "kubectl not found (scripts/setup.sh installs one into .tools/bin)"
  load_env "$DIR"
  tok="$("$kubectl" --kubeconfig "$DIR/admin.kubeconfig" -n "$ns" create token "$sa" --duration=24h)"
  out="$DIR/$ns-$sa.kubeconfig"
  sed -e '/^users:/,$d' "$DIR/admin.kubeconfig" >"$out"
  cat >>"$out" <<EOF
users:
- name: $ns-$sa
  user:
    token: $tok
contexts:
- name: prescale-test
  context:
    cluster: prescale-test
    user: $ns-$sa
    namespace: $ns
current-context: prescale-test
EOF
  chmod 600 "$out"
  echo "$out"
}

cmd="${1:-}"
case "$cmd" in
  up) DIR="${2:-$(default_dir)}"; up ;;
  down) DIR="${2:-$(default_dir)}"; down ;;
  status) DIR="${2:-$(default_dir)}"; status ;;
  token) [[ $# -ge 3 ]] || die "usage: $0 token NAMESPACE SERVICEACCOUNT [DIR]"; DIR="${4:-$(default_dir)}"; token "$2" "$3" ;;
  init) [[ $# -eq 2 ]] || die "usage: $0 init DIR"; init "$2" ;;
  argv) [[ $# -eq 3 ]] || die "usage: $0 argv COMPONENT DIR"; argv "$2" "$3" ;;
  *) die "usage: $0 up|down|status|token|init|argv (see the top of this file)" ;;
esac
