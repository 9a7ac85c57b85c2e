#!/usr/bin/env bash
# A real Prometheus on loopback whose history is a recorded trace, for trying prescale without a cluster's
# Prometheus (docs/quick-start.md, with scripts/cluster.sh).
#
#   scripts/prometheus.sh up [DIR]     backfill the trace and start Prometheus; the last line printed is
#                                      `export PRESCALE_PROMETHEUS_URL=http://127.0.0.1:PORT`
#   scripts/prometheus.sh down [DIR]   stop it and remove DIR
#
# The trace (TRACE, default examples/traces/llm-proxy-21d.csv: `timestamp,value` rows at one minute) is
# shifted so that its first HISTORY_DAYS (default 14) days and MORNING_HOURS (default 6) hours lie in the
# past and the rest in the future: "now" is 06:00 of the trace's day, when its daily rise begins, so a
# scaler started on it scales up within minutes (MORNING_HOURS=0 starts at the trace's midnight, which
# stays quiet for hours).
# Prometheus answers a query at time t from the samples at or before t, so the future part plays out as
# live traffic as the clock reaches it: the series keeps moving for days without an exporter.
# The series is `llm_proxy_requests_per_second{namespace="quickstart",app="llm-proxy"}` (METRIC, LABELS).
#
# DIR defaults to ${TMPDIR:-/tmp}/prescale-prometheus; PORT to a free port; HOST (default 127.0.0.1) is the
# address it listens on: HOST=10.244.0.1, the node's bridge address (scripts/cluster.sh), lets the operator's
# pod reach it too (docs/node.md). Needs prometheus and promtool
# (scripts/setup.sh installs them from Debian) and python3 (for a free port).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { echo "[prometheus] $*" >&2; }
die() { say "$*"; exit 1; }
TRACE="${TRACE:-$ROOT/examples/traces/llm-proxy-21d.csv}"
HISTORY_DAYS="${HISTORY_DAYS:-14}"
MORNING_HOURS="${MORNING_HOURS:-6}"
METRIC="${METRIC:-llm_proxy_requests_per_second}"
LABELS="${LABELS:-namespace=\"quickstart\",app=\"llm-proxy\"}"
HOST="${HOST:-127.0.0.1}"

up() {
  local dir="$1"
  if [[ -f "$dir/prometheus.pid" ]] && kill -0 "$(cat "$dir/prometheus.pid")" 2>/dev/null; then
    say "already running in $dir"
    echo "export PRESCALE_PROMETHEUS_URL=$(cat "$dir/url")"
    return
  fi
  command -v prometheus >/dev/null && command -v promtool >/dev/null ||
    die "prometheus/promtool missing: run scripts/setup.sh (Debian's prometheus package)"
  [[ -f "$TRACE" ]] || die "no trace $TRACE"
  rm -rf "$dir"
  mkdir -p "$dir/data"
  local t0=$SECONDS port first shift
  port="${PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
  first="$(awk -F, 'NR == 2 { print $1; exit }' "$TRACE")"
  [[ "$first" =~ ^[0-9]+$ ]] || die "$TRACE: the first row's timestamp is not a Unix time: $first"
  shift=$(( ($(date +%s) / 60 * 60) - HISTORY_DAYS * 86400 - MORNING_HOURS * 3600 - first ))
  awk -F, -v shift="$shift" -v series="$METRIC{$LABELS}" -v metric="$METRIC" '
    NR == 1 { print "# TYPE " metric " gauge"; next }
    $2 != "" && $2 != "NaN" { printf "%s %s %d\n", series, $2, $1 + shift }
    END { print "# EOF" }' "$TRACE" >"$dir/history.om"
  promtool tsdb create-blocks-from openmetrics --max-block-duration=24h "$dir/history.om" "$dir/data" >/dev/null
  rm -f "$dir/history.om"
  printf 'global:\n  scrape_interval: 1m\nscrape_configs: []\n' >"$dir/prometheus.yml"
  nohup prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
    --storage.tsdb.retention.time=400d --web.listen-address="$HOST:$port" \
    >"$dir/prometheus.log" 2>&1 </dev/null &
  echo $! >"$dir/prometheus.pid"
  echo "http://$HOST:$port" >"$dir/url"
  local deadline=$((SECONDS + 60))
  until curl -fsS "http://$HOST:$port/-/ready" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { tail -20 "$dir/prometheus.log" >&2; die "Prometheus did not become ready"; }
    sleep 0.3
  done
  say "ready in $((SECONDS - t0))s with $(basename "$TRACE") as $METRIC{$LABELS}: $HISTORY_DAYS days and $MORNING_HOURS hours of history (now is the trace's ${MORNING_HOURS}:00, its daily rise begins), the rest plays out live; stop with: $0 down $dir"
  echo "export PRESCALE_PROMETHEUS_URL=http://$HOST:$port"
}

down() {
  local dir="$1" pid
  if [[ -f "$dir/prometheus.pid" ]]; then
    pid="$(cat "$dir/prometheus.pid")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -rf "$dir"
    say "stopped; removed $dir"
  else
    say "nothing runs in $dir"
  fi
}

DIR="${2:-${TMPDIR:-/tmp}/prescale-prometheus}"
case "${1:-}" in
  up) up "$DIR" ;;
  down) down "$DIR" ;;
  *) die "usage: $0 up|down [DIR]" ;;
esac
