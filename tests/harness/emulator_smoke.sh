#!/usr/bin/env bash
# Checks the Kubernetes API emulator (tests/harness/kube_emulator.py) over real HTTP with curl, the way
# kube-rs uses it: create, /scale GET+PATCH, /status merge patch, generation, no-op writes, 409 on a stale
# resourceVersion, list + watch from a resourceVersion, selectors, events.
# usage: tests/harness/emulator_smoke.sh   (needs .venv from scripts/setup.sh; PRESCALE_TEST_PYTHON overrides)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${PRESCALE_TEST_PYTHON:-$ROOT/.venv/bin/python}"
[[ -x "$PY" ]] || { echo "no $PY: run scripts/setup.sh" >&2; exit 1; }
WORK="$(mktemp -d)"
EMU_PID=""
cleanup() {
  [[ -n "$EMU_PID" ]] && kill "$EMU_PID" 2>/dev/null || true
  [[ -n "${WATCH_PID:-}" ]] && kill "$WATCH_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

"$PY" "$ROOT/tests/harness/kube_emulator.py" 0 >"$WORK/out" 2>"$WORK/err" &
EMU_PID=$!
for _ in $(seq 1 100); do grep -q '^READY ' "$WORK/out" 2>/dev/null && break; sleep 0.1; done
U="$(sed -n 's/^READY //p' "$WORK/out")"
[[ -n "$U" ]] || { echo "emulator did not start:"; cat "$WORK/err"; exit 1; }

pass=0; fail=0
# check NAME JSON-VALUE PY-EXPR : evaluates PY-EXPR with `d` = the parsed JSON
check() {
  local name="$1" json="$2" expr="$3"
  if echo "$json" | "$PY" -c "import json,sys; d=json.load(sys.stdin); sys.exit(0 if ($expr) else 1)" 2>/dev/null; then
    pass=$((pass + 1)); echo "ok   $name"
  else
    fail=$((fail + 1)); echo "FAIL $name: $expr"; echo "     got: $json" | head -c 2000; echo
  fi
}
req() { # req METHOD PATH [CONTENT-TYPE BODY] -> prints body, sets $CODE
  local out
  if [[ $# -ge 4 ]]; then
    out=$(curl -sS -w '\n%{http_code}' -X "$1" -H "Content-Type: $3" --data-binary "$4" "$U$2")
  else
    out=$(curl -sS -w '\n%{http_code}' -X "$1" "$U$2")
  fi
  CODE="${out##*$'\n'}"; BODY="${out%$'\n'*}"
}
DEP=/apis/apps/v1/namespaces/default/deployments
PSC=/apis/prescale.dev/v1alpha1/namespaces/default/predictivescalers

req GET /api/v1/namespaces/default/pods
check "undeclared resource -> 404" "{\"code\": $CODE}" "d['code'] == 404"

req POST $DEP application/json '{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"llm-proxy","labels":{"app":"llm-proxy"}},"spec":{"replicas":2,"selector":{"matchLabels":{"app":"llm-proxy"}},"template":{"metadata":{"labels":{"app":"llm-proxy"}},"spec":{"containers":[{"name":"proxy","image":"proxy:1"}]}}}}'
check "create deployment" "$BODY" "d['metadata']['resourceVersion'] and d['metadata']['uid'] and d['metadata']['generation'] == 1 and d['metadata']['namespace'] == 'default' and d['status']['readyReplicas'] == 2"
req POST $DEP application/json '{"metadata":{"name":"llm-proxy"},"spec":{"replicas":1}}'
check "create again -> 409 AlreadyExists" "{\"code\": $CODE, \"b\": $BODY}" "d['code'] == 409 and d['b']['reason'] == 'AlreadyExists'"

req GET $DEP/llm-proxy/scale
check "GET scale" "$BODY" "d['apiVersion'] == 'autoscaling/v1' and d['kind'] == 'Scale' and d['spec']['replicas'] == 2 and d['status']['selector'] == 'app=llm-proxy'"
req PATCH $DEP/llm-proxy/scale application/merge-patch+json '{"spec":{"replicas":7}}'
check "PATCH scale (merge)" "$BODY" "d['kind'] == 'Scale' and d['spec']['replicas'] == 7 and d['status']['replicas'] == 7"
req PATCH $DEP/llm-proxy/scale application/json-patch+json '[{"op":"replace","path":"/spec/replicas","value":9}]'
check "PATCH scale (JSON patch)" "$BODY" "d['spec']['replicas'] == 9"
req PATCH $DEP/llm-proxy/scale application/apply-patch+yaml '{"apiVersion":"autoscaling/v1","kind":"Scale","spec":{"replicas":8}}'
check "PATCH scale (apply)" "$BODY" "d['spec']['replicas'] == 8"
req GET $DEP/llm-proxy
check "deployment after scale: replicas, generation, status, kind kept" "$BODY" "d['spec']['replicas'] == 8 and d['metadata']['generation'] == 4 and d['status']['observedGeneration'] == 4 and d['kind'] == 'Deployment'"
RV_BEFORE=$(echo "$BODY" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["metadata"]["resourceVersion"])')
req PATCH $DEP/llm-proxy/scale application/merge-patch+json '{"spec":{"replicas":8}}'
check "no-op scale patch keeps resourceVersion" "$BODY" "d['metadata']['resourceVersion'] == '$RV_BEFORE'"
req PATCH $DEP/llm-proxy application/merge-patch+json '{"metadata":{"resourceVersion":"1","labels":{"x":"y"}}}'
check "stale resourceVersion -> 409 Conflict" "{\"code\": $CODE, \"b\": $BODY}" "d['code'] == 409 and d['b']['reason'] == 'Conflict'"
req PATCH $DEP/nope/scale application/merge-patch+json '{"spec":{"replicas":1}}'
check "scale of a missing deployment -> 404 NotFound" "{\"code\": $CODE, \"b\": $BODY}" "d['code'] == 404 and d['b']['reason'] == 'NotFound'"

req POST $PSC application/json '{"apiVersion":"prescale.dev/v1alpha1","kind":"PredictiveScaler","metadata":{"name":"llm-proxy","namespace":"default"},"spec":{"scaleTargetRef":{"apiVersion":"apps/v1","kind":"Deployment","name":"llm-proxy"},"minReplicas":2,"maxReplicas":60},"status":{"ignored":true}}'
check "create PredictiveScaler (status dropped)" "$BODY" "d['metadata']['generation'] == 1 and 'status' not in d"
RV0=$(echo "$BODY" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["metadata"]["resourceVersion"])')

# a watch from RV0: should see only what happens after it
curl -sS -N "$U$PSC?watch=true&resourceVersion=$RV0&allowWatchBookmarks=true" >"$WORK/watch" &
WATCH_PID=$!
sleep 0.5

req PATCH $PSC/llm-proxy/status application/merge-patch+json '{"status":{"observedGeneration":1,"desiredReplicas":5,"conditions":[{"type":"Ready","status":"True","reason":"Ok","message":"fine","lastTransitionTime":"2026-01-01T00:00:00Z"}]},"spec":{"minReplicas":99}}'
check "merge-patch /status: status set, spec untouched, generation unchanged" "$BODY" "d['status']['desiredReplicas'] == 5 and d['status']['conditions'][0]['type'] == 'Ready' and d['spec']['minReplicas'] == 2 and d['metadata']['generation'] == 1"
req PATCH $PSC/llm-proxy/status application/merge-patch+json '{"status":{"desiredReplicas":5}}'
check "no-op /status patch keeps resourceVersion" "$BODY" "int(d['metadata']['resourceVersion']) == $RV0 + 1"
req PATCH $PSC/llm-proxy application/merge-patch+json '{"metadata":{"annotations":{"a":"b"}}}'
check "metadata-only patch: generation unchanged" "$BODY" "d['metadata']['generation'] == 1 and d['metadata']['annotations'] == {'a': 'b'}"
req PATCH $PSC/llm-proxy application/merge-patch+json '{"spec":{"maxReplicas":50},"status":{"desiredReplicas":1}}'
check "spec patch: generation+1, status not changed via main resource" "$BODY" "d['metadata']['generation'] == 2 and d['spec']['maxReplicas'] == 50 and d['status']['desiredReplicas'] == 5"
req PUT $PSC/llm-proxy application/json "$(echo "$BODY" | "$PY" -c 'import json,sys; d=json.load(sys.stdin); d["spec"]["maxReplicas"]=40; print(json.dumps(d))')"
check "PUT replace: generation+1" "$BODY" "d['metadata']['generation'] == 3 and d['spec']['maxReplicas'] == 40"

req GET "$PSC"
check "list has kind, resourceVersion, items" "$BODY" "d['kind'] == 'PredictiveScalerList' and int(d['metadata']['resourceVersion']) >= $RV0 + 4 and len(d['items']) == 1"
req GET "$DEP?labelSelector=app%3Dllm-proxy"
check "labelSelector match" "$BODY" "len(d['items']) == 1"
req GET "$DEP?labelSelector=app%3Dother"
check "labelSelector no match" "$BODY" "len(d['items']) == 0"
req GET "$DEP?fieldSelector=metadata.name%3Dllm-proxy"
check "fieldSelector match" "$BODY" "len(d['items']) == 1"

req POST /apis/events.k8s.io/v1/namespaces/default/events application/json '{"apiVersion":"events.k8s.io/v1","kind":"Event","metadata":{"name":"llm-proxy.1"},"eventTime":"2026-01-01T00:00:00.000000Z","reason":"Scaled","action":"Scale","note":"2 -> 9","type":"Normal","reportingController":"prescale","reportingInstance":"x","regarding":{"kind":"PredictiveScaler","name":"llm-proxy","namespace":"default"}}'
check "create events.k8s.io/v1 Event" "$BODY" "d['metadata']['name'] == 'llm-proxy.1' and d['reason'] == 'Scaled'"
req PATCH /apis/events.k8s.io/v1/namespaces/default/events/llm-proxy.1 application/merge-patch+json '{"series":{"count":2,"lastObservedTime":"2026-01-01T00:01:00.000000Z"}}'
check "patch Event series" "$BODY" "d['series']['count'] == 2"
req POST /api/v1/namespaces/default/events application/json '{"apiVersion":"v1","kind":"Event","metadata":{"generateName":"llm-proxy."},"reason":"Scaled","message":"m","involvedObject":{"kind":"PredictiveScaler","name":"llm-proxy"}}'
check "create core v1 Event with generateName" "$BODY" "d['metadata']['name'].startswith('llm-proxy.') and len(d['metadata']['name']) == len('llm-proxy.') + 5"
req POST /apis/coordination.k8s.io/v1/namespaces/default/leases application/json '{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"prescale"},"spec":{}}'
check "create Lease" "$BODY" "d['metadata']['name'] == 'prescale'"

sleep 0.5
kill "$WATCH_PID" 2>/dev/null || true; wait "$WATCH_PID" 2>/dev/null || true; WATCH_PID=""
WATCH_JSON="$("$PY" -c 'import json,sys; print(json.dumps([json.loads(l) for l in open(sys.argv[1]) if l.strip()]))' "$WORK/watch")"
check "watch from resourceVersion: only the 4 later changes, all MODIFIED, in order" "$WATCH_JSON" "[e['type'] for e in d] == ['MODIFIED'] * 4 and [int(e['object']['metadata']['resourceVersion']) for e in d] == sorted(int(e['object']['metadata']['resourceVersion']) for e in d)"

echo "emulator smoke: $pass passed, $fail failed"
[[ "$fail" == 0 ]]
