#!/usr/bin/env bash
# A real Kubernetes cluster on this machine, built by scripts/build_k8s.sh from the Go module proxy:
#   - the control plane on loopback: etcd, kube-apiserver (TLS, RBAC, client-certificate admin) and
#     kube-controller-manager;
#   - one node, `prescale-node`: containerd and runc (Debian's), kube-scheduler and a kubelet, pods on the
#     bridge prescale0 (10.244.0.0/24, this machine only; the node's address is 10.244.0.1), a pause image
#     built here (scripts/node/pause.c). Images come from `scripts/cluster.sh load IMAGE.tar`, never a
#     registry (no internet): pods use imagePullPolicy Never or IfNotPresent.
# It is how the tests run against a real API server, and how to try prescale without a cluster.
#
#   scripts/cluster.sh up [DIR]          start it in the background; the last line printed is
#                                        `export KUBECONFIG=DIR/admin.kubeconfig`. The node needs root; without
#                                        it (or with PRESCALE_NODE=0) Pods stay Pending; PRESCALE_NODE=1: a
#                                        node or fail.
#   scripts/cluster.sh down [DIR]        stop everything `up` started, unmount and remove what the node made
#                                        (containers, mounts, network namespaces, the bridge) and remove DIR
#   scripts/cluster.sh load IMAGE.tar [DIR]  import an OCI image archive (scripts/image.sh) into the node
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
# (for free ports) and, for `token`, kubectl (scripts/setup.sh puts one in .tools/bin); the node needs
# containerd, runc, containernetworking-plugins and gcc (scripts/setup.sh installs them).
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
        --kubelet-preferred-address-types=InternalIP --kubelet-certificate-authority="$pki/ca.crt" \
        --kubelet-client-certificate="$pki/admin.crt" --kubelet-client-key="$pki/admin.key" \
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
    *) node_argv "$component" "$dir" ;;
  esac
}

# --- the node ---------------------------------------------------------------------------------------------
NODE_NAME=prescale-node
BRIDGE=prescale0
NODE_IP=10.244.0.1
POD_SUBNET=10.244.0.0/24
NODE_COMPONENTS=(containerd kube-scheduler kubelet api-proxy)
# Pods reach the API server at the `kubernetes` Service's ClusterIP (KUBERNETES_SERVICE_HOST), the first
# address of SERVICE_CIDR; with no kube-proxy, that address sits on the bridge and socat forwards it to
# the API server on loopback (its certificate names 10.0.0.1).
API_CLUSTER_IP=10.0.0.1
PAUSE_IMAGE=registry.k8s.io/pause:prescale

# PRESCALE_NODE: 1 = a node or fail, 0 = none, unset = a node when this machine can run one (root, and
# what scripts/setup.sh installs), else a note and none
node_wanted() {
  case "${PRESCALE_NODE:-}" in
    0) return 1 ;;
    1) return 0 ;;
  esac
  if [[ $EUID -ne 0 ]] || ! command -v containerd >/dev/null || ! command -v socat >/dev/null; then
    say "no node: it needs root and containerd, runc, socat (scripts/setup.sh installs them as root); Pods will stay Pending"
    return 1
  fi
}

# the pause image, built once per version of pause.c into the cache
pause_image() {
  local cache="${PRESCALE_CACHE:-$HOME/.cache/prescale}" sum out
  sum="$(sha256sum "$ROOT/scripts/node/pause.c" | cut -c1-12)"
  out="$cache/pause-$sum.tar"
  if [[ ! -f "$out" ]]; then
    mkdir -p "$cache"
    gcc -static -O2 -s -o "$cache/pause-$sum" "$ROOT/scripts/node/pause.c" ||
      die "could not build the pause binary (apt-get install gcc libc6-dev)"
    python3 "$ROOT/scripts/oci_image.py" --out "$out.tmp" --name "$PAUSE_IMAGE" \
      --entrypoint /pause --user 65535:65535 --add "$cache/pause-$sum:/pause" >/dev/null
    mv "$out.tmp" "$out"
  fi
  echo "$out"
}

node_init() {
  local dir="$1" pki="$1/pki" n="$1/node"
  mkdir -p "$n/cni" "$n/containerd" "$n/kubelet"
  {
    echo "KUBELET_PORT=$(free_port)"
    echo "KUBELET_HEALTHZ_PORT=$(free_port)"
    echo "NODE_BIN=$(bash "$ROOT/scripts/build_k8s.sh" node)"
  } >>"$dir/cluster.env"
  load_env "$dir"
  (
    cd "$pki"
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$NODE_NAME" -keyout kubelet.key -out kubelet.csr 2>/dev/null
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=serverAuth" "subjectAltName=DNS:$NODE_NAME,IP:$NODE_IP" >kubelet.ext
    openssl x509 -req -in kubelet.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
      -extfile kubelet.ext -out kubelet.crt 2>/dev/null
    rm -f kubelet.csr kubelet.ext
    chmod 600 kubelet.key
  )
  cat >"$n/containerd.toml" <<EOF
version = 2
root = "$n/containerd/root"
state = "$n/containerd/state"
[grpc]
  address = "$n/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # the OOM scores the kubelet asks for (-998 for sandboxes) need CAP_SYS_RESOURCE, which these machines'
  # root does not have: clamp them to containerd's own (0), as rootless setups do
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "${PRESCALE_RUNC:-runc}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$n/cni"
[plugins."io.containerd.internal.v1.opt"]
  path = "$n/containerd/opt"
EOF
  cat >"$n/cni/10-prescale.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "prescale", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$n/cni-ipam",
            "ranges": [[{"subnet": "$POD_SUBNET", "gateway": "$NODE_IP"}]], "routes": [{"dst": "0.0.0.0/0"}]}}
]}
EOF
  # cgroupsPerQOS off: pods' cgroups sit under the runtime's, and `down` has no QoS tree to remove.
  # failCgroupV1 off: these machines run cgroup v1 (the kubelet warns).
  cat >"$n/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $pki/kubelet.crt
tlsPrivateKeyFile: $pki/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://$n/containerd.sock
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failCgroupV1: false
failSwapOn: false
resolvConf: ""
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
serializeImagePulls: false
EOF
}

node_argv() {
  local component="$1" dir="$2" n="$2/node"
  load_env "$dir"
  case "$component" in
    containerd) printf '%s\n' containerd --config "$n/containerd.toml" --log-level warn ;;
    kube-scheduler)
      printf '%s\n' "$NODE_BIN/kube-scheduler" --kubeconfig="$dir/admin.kubeconfig" \
        --authentication-kubeconfig="$dir/admin.kubeconfig" --authorization-kubeconfig="$dir/admin.kubeconfig" \
        --bind-address=127.0.0.1 --secure-port=0 --leader-elect=false --profiling=false --v=1 ;;
    kubelet)
      printf '%s\n' "$NODE_BIN/kubelet" --config="$n/kubelet.yaml" --kubeconfig="$dir/admin.kubeconfig" \
        --root-dir="$n/kubelet" --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --oom-score-adj=0 --v=1 ;;
    api-proxy) printf '%s\n' socat "TCP-LISTEN:443,bind=$API_CLUSTER_IP,fork,reuseaddr" "TCP:127.0.0.1:$API_PORT" ;;
    *) die "unknown component $component (${COMPONENTS[*]} ${NODE_COMPONENTS[*]})" ;;
  esac
}

ctr_node() { ctr --address "$DIR/node/containerd.sock" -n k8s.io "$@"; }

node_ready() {
  curl_admin "/api/v1/nodes/$NODE_NAME" | python3 -c '
import json, sys
node = json.load(sys.stdin)
sys.exit(0 if any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", [])) else 1)'
}

node_up() {
  [[ $EUID -eq 0 ]] || die "the node needs root (containerd, mounts, a bridge); run as root, or PRESCALE_NODE=0 for the API server alone"
  local c
  for c in containerd runc ctr /usr/lib/cni/bridge gcc socat; do
    command -v "$c" >/dev/null || [[ -x "$c" ]] ||
      die "$c is missing: apt-get install containerd runc containernetworking-plugins gcc socat (scripts/setup.sh does), or PRESCALE_NODE=0"
  done
  local pause
  pause="$(pause_image)"
  node_init "$DIR"
  load_env "$DIR"
  # the bridge exists before the kubelet, which needs the node address; the CNI plugin adds pods to it
  { ls /var/run/netns 2>/dev/null || true; } | sort >"$DIR/node/netns-before"
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$NODE_IP/24" dev "$BRIDGE"
    ip addr add "$API_CLUSTER_IP/32" dev "$BRIDGE"
  fi
  ip link set "$BRIDGE" up
  start api-proxy
  start containerd
  wait_for containerd 30 ctr_node version ||
    { tail -20 "$DIR/logs/containerd.log" >&2; die "containerd did not start (log: $DIR/logs/containerd.log)"; }
  ctr_node images import "$pause" >/dev/null || die "could not import the pause image $pause into containerd"
  start kube-scheduler
  start kubelet
  wait_for "node $NODE_NAME" 120 node_ready ||
    { tail -30 "$DIR/logs/kubelet.log" >&2; die "node $NODE_NAME did not become Ready (log: $DIR/logs/kubelet.log)"; }
}

stop_pid() { # COMPONENT: TERM, then KILL after 5 s; false if it was not running
  local c="$1" pid
  running "$c" || return 1
  pid="$(cat "$DIR/$c.pid")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

node_down() {
  local id m ns
  [[ -d "$DIR/node" ]] || return 0
  if stop_pid kubelet; then stopped+=(kubelet); fi
  if stop_pid kube-scheduler; then stopped+=(kube-scheduler); fi
  if stop_pid api-proxy; then stopped+=(api-proxy); fi
  if running containerd; then
    # every container and sandbox the kubelet left: killed and deleted while containerd still runs
    for id in $(ctr_node tasks ls -q 2>/dev/null); do ctr_node tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true; done
    sleep 0.5
    for id in $(ctr_node tasks ls -q 2>/dev/null); do ctr_node tasks delete -f "$id" >/dev/null 2>&1 || true; done
    for id in $(ctr_node containers ls -q 2>/dev/null); do ctr_node containers delete "$id" >/dev/null 2>&1 || true; done
    stop_pid containerd
    stopped+=(containerd)
  fi
  pkill -9 -f "containerd-shim-runc-v2 -namespace k8s.io -address $DIR/node/containerd.sock" 2>/dev/null || true
  # mounts under DIR (rootfs overlays, shm, projected volumes), deepest first
  for m in $(awk -v d="$DIR/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  # the network namespaces containerd made for this node's pods
  for ns in $(comm -13 "$DIR/node/netns-before" <({ ls /var/run/netns 2>/dev/null || true; } | sort)); do
    umount "/var/run/netns/$ns" 2>/dev/null || true
    rm -f "/var/run/netns/$ns"
  done
  ip link del "$BRIDGE" 2>/dev/null || true
  # the containers' cgroups (cgroup v1: one tree per controller), deepest first, and runc's state
  find /sys/fs/cgroup/*/k8s.io -depth -type d -exec rmdir {} + 2>/dev/null || true
  rm -rf /run/containerd/runc/k8s.io
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
  if node_wanted; then node_up; fi
  say "up in $((SECONDS - t0))s: API server https://127.0.0.1:$API_PORT, logs in $DIR/logs; stop with: $0 down $DIR"
  echo "export KUBECONFIG=$DIR/admin.kubeconfig"
}

down() {
  local c stopped=()
  node_down
  for c in kube-controller-manager kube-apiserver etcd; do
    if stop_pid "$c"; then stopped+=("$c"); fi
  done
  if [[ -f "$DIR/cluster.env" ]]; then rm -rf "$DIR"; fi
  say "stopped ${stopped[*]:-nothing}; removed $DIR"
}

status() {
  load_env "$DIR"
  local c
  for c in "${COMPONENTS[@]}" "${NODE_COMPONENTS[@]}"; do
    [[ "$c" == etcd || "$c" == kube-apiserver || "$c" == kube-controller-manager || -d "$DIR/node" ]] || continue
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
  load) [[ $# -ge 2 ]] || die "usage: $0 load IMAGE.tar [DIR]"; DIR="${3:-$(default_dir)}"; load_env "$DIR"
    [[ -d "$DIR/node" ]] || die "the cluster in $DIR has no node (it was started with PRESCALE_NODE=0)"
    ctr_node images import "$2" ;;
  init) [[ $# -eq 2 ]] || die "usage: $0 init DIR"; init "$2" ;;
  argv) [[ $# -eq 3 ]] || die "usage: $0 argv COMPONENT DIR"; argv "$2" "$3" ;;
  *) die "usage: $0 up|down|status|load|token|init|argv (see the top of this file)" ;;
esac
