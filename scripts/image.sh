#!/usr/bin/env bash
# Builds the operator's image and the demo gateway's image without a Docker daemon, and loads them into the
# node of scripts/cluster.sh when one runs.
#
#   scripts/image.sh [--debug] [--no-load] [CLUSTER_DIR]
#
# Each image is one layer written by scripts/oci_image.py: the binary, the shared libraries it links
# (glibc, libgcc: what the Dockerfile's distroless cc-debian12 base carries), CA certificates and an
# /etc/passwd naming the non-root user 65532, which the image runs as. The operator's entrypoint is the
# Dockerfile's: ENTRYPOINT ["/prescale"], CMD ["run"]. The operator's reference is the chart's default
# (image.repository and the chart's appVersion), so `helm install` with `image.pullPolicy: IfNotPresent`
# (the default) or `Never` finds it on the node and pulls nothing.
#
# Release builds by default (cargo build --release); --debug builds (or reuses) the debug binaries of
# `cargo test --workspace`. Archives go to $PRESCALE_CACHE/images (default ~/.cache/prescale/images). Prints one line per
# image: `operator=<reference>` and `gateway=<reference>`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { echo "[image] $*" >&2; }
die() { say "$*"; exit 1; }

profile=release load=1 dir=""
for arg in "$@"; do
  case "$arg" in
    --debug) profile=debug ;;
    --no-load) load=0 ;;
    -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
    -*) die "unknown option $arg (see: $0 --help)" ;;
    *) dir="$arg" ;;
  esac
done
dir="${dir:-${PRESCALE_CLUSTER_DIR:-${TMPDIR:-/tmp}/prescale-cluster}}"

version="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$ROOT/charts/prescale/Chart.yaml")"
repository="$(sed -n 's/^  repository: *//p' "$ROOT/charts/prescale/values.yaml" | head -1)"
[[ -n "$version" && -n "$repository" ]] || die "could not read the chart's appVersion and image.repository"
OPERATOR="$repository:$version"
GATEWAY="${repository%/*}/prescale-demo-gateway:$version"

t0=$SECONDS
cd "$ROOT"
# -p: the gateway binary is in a workspace member, which a bare --bin does not search. --debug builds
# what `cargo test --workspace` builds, binaries included, with the same features: a plain debug build
# would unify the dependencies' features without the dev-dependencies and rebuild both binaries
if [[ "$profile" == release ]]; then
  cmd=(cargo build --release --locked -p prescale -p prescale-demo-gateway --bin prescale --bin prescale-demo-gateway)
else
  cmd=(cargo test --workspace --no-run --locked)
fi
"${cmd[@]}" >&2 || die "${cmd[*]} failed"
target="${CARGO_TARGET_DIR:-$ROOT/target}/$profile"

out="${PRESCALE_CACHE:-$HOME/.cache/prescale}/images"
mkdir -p "$out"
common=(--user 65532:65532 --file "/etc/passwd:root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
  --file "/etc/group:root:x:0:\nnonroot:x:65532:\n" --dir /tmp --dir /home/nonroot)
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
  common+=(--add /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt)
fi
python3 "$ROOT/scripts/oci_image.py" --out "$out/operator.tar" --name "$OPERATOR" "${common[@]}" \
  --entrypoint /prescale --cmd run --add "$target/prescale:/prescale" --libs-of "$target/prescale" >&2
python3 "$ROOT/scripts/oci_image.py" --out "$out/gateway.tar" --name "$GATEWAY" "${common[@]}" \
  --entrypoint /prescale-demo-gateway --add "$target/prescale-demo-gateway:/prescale-demo-gateway" \
  --libs-of "$target/prescale-demo-gateway" >&2
say "wrote $out/operator.tar ($(du -h "$out/operator.tar" | cut -f1)) and $out/gateway.tar ($(du -h "$out/gateway.tar" | cut -f1)) in $((SECONDS - t0))s"

if [[ "$load" == 1 ]]; then
  if [[ -S "$dir/node/containerd.sock" ]]; then
    bash "$ROOT/scripts/cluster.sh" load "$out/operator.tar" "$dir" >&2
    bash "$ROOT/scripts/cluster.sh" load "$out/gateway.tar" "$dir" >&2
    say "loaded into the node of $dir"
  else
    say "no node runs in $dir (scripts/cluster.sh up starts one): not loaded; the archives are in $out"
  fi
fi
echo "operator=$OPERATOR"
echo "gateway=$GATEWAY"
