#!/usr/bin/env bash
# Offline checks of what a platform team installs, with the tools scripts/setup.sh pins:
#   1. the chart's appVersion is the crate's version, and its crds/ is the top-level crds/;
#   2. values.schema.json describes every key and refuses unknown ones; `helm lint --strict` with the default values and each charts/prescale/ci/*-values.yaml;
#   3. `helm template` with the default values, each ci/*-values.yaml, the kind e2e's values, and
#      with leader election, then `kubernetes-validate --strict` on every manifest and the CRD,
#      for the oldest Kubernetes the chart supports (1.29: rendered with --kube-version 1.29.0 and
#      without the ValidatingAdmissionPolicy, which is 1.30+) and kubectl's (1.35);
#   4. what the chart must refuse, with the message it must say;
#   5. every PredictiveScaler in examples/ and tests/e2e/ against the CRD's schema (unknown fields
#      are errors: tests/harness/validate_cr.py; tests/examples.rs checks the CEL rules);
#   6. the GitHub workflow files with actionlint.
# Prints each step's time; exits non-zero if any step failed (all steps run).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
HELM="${HELM:-$ROOT/.tools/bin/helm}"
PY="$ROOT/.venv/bin/python"
KV="$ROOT/.venv/bin/kubernetes-validate"
CHART=charts/prescale
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT

failed=()
passed=0
ms_since() { local d=$(( $(date +%s%3N) - $1 )); printf '%d.%02d' $((d / 1000)) $((d % 1000 / 10)); }
check() { # check NAME CMD...: runs CMD, prints its time
  local name="$1"; shift
  local t0; t0=$(date +%s%3N)
  if "$@" >"$OUT/log" 2>&1; then
    passed=$((passed + 1))
    printf '  ok    %-58s %6.2fs\n' "$name" "$(ms_since "$t0")"
  else
    failed+=("$name")
    printf '  FAIL  %-58s %6.2fs\n' "$name" "$(ms_since "$t0")"
    sed 's/^/        /' "$OUT/log"
  fi
}

same_version() {
  local crate chart
  crate="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
  chart="$(sed -n 's/^appVersion: "\(.*\)"/\1/p' $CHART/Chart.yaml)"
  [[ "$crate" == "$chart" ]] || { echo "Chart.yaml appVersion $chart, Cargo.toml version $crate"; return 1; }
}

render() { # render OUTFILE HELM-TEMPLATE-ARGS...
  local out="$1"; shift
  "$HELM" template prescale "$@" --namespace prescale-system >"$out"
}

# refuse MESSAGE HELM-TEMPLATE-ARGS...: helm template must fail, saying MESSAGE
refuse() {
  local want="$1"; shift
  if "$HELM" template prescale $CHART "$@" >"$OUT/refused.yaml" 2>"$OUT/refused.err"; then
    echo "helm template $* rendered; it must refuse"
    return 1
  fi
  grep -qF -- "$want" "$OUT/refused.err" || { echo "expected: $want"; cat "$OUT/refused.err"; return 1; }
}

leader_election_render() {
  render "$OUT/leader-election.yaml" $CHART --set leaderElection.enabled=true --set replicaCount=2
  grep -q -- '--leader-elect' "$OUT/leader-election.yaml" && grep -q 'coordination.k8s.io' "$OUT/leader-election.yaml" \
    && grep -q 'POD_NAMESPACE' "$OUT/leader-election.yaml"
}

echo "==> chart checks ($("$HELM" version --short), kubernetes-validate $("$KV" --version 2>&1 | tail -1))"
t_all=$(date +%s)
check "appVersion = crate version" same_version
check "chart crds/ = crds/" cmp crds/predictivescalers.prescale.dev.yaml $CHART/crds/predictivescalers.prescale.dev.yaml
check "values.schema.json: a description per key, no unknown keys" \
  "$PY" tests/harness/lint_values_schema.py $CHART/values.schema.json
check "helm lint --strict (default values)" "$HELM" lint --strict $CHART
for values in $CHART/ci/*-values.yaml tests/e2e/values.yaml; do
  check "helm lint --strict -f $values" "$HELM" lint --strict $CHART -f "$values"
done
check "helm template (default values)" render "$OUT/default.yaml" $CHART
i=0
for values in $CHART/ci/*-values.yaml tests/e2e/values.yaml; do
  i=$((i + 1))
  check "helm template -f $values" render "$OUT/values-$i.yaml" $CHART -f "$values"
  # Kubernetes 1.29 has no admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy: the chart
  # refuses floorMode/drainAware there unless rbac.admissionPolicy.enabled=false (checked below)
  mkdir -p "$OUT/1.29"
  check "helm template -f $values (Kubernetes 1.29, no admission policy)" render "$OUT/1.29/values-$i.yaml" \
    $CHART -f "$values" --kube-version 1.29.0 --set rbac.admissionPolicy.enabled=false
done
check "helm template with leader election" leader_election_render
check "kubernetes-validate --strict -k 1.29.0 (the 1.29 renders + CRD)" \
  "$KV" --strict --quiet -k 1.29.0 "$OUT"/default.yaml "$OUT"/leader-election.yaml "$OUT"/1.29/*.yaml \
  crds/predictivescalers.prescale.dev.yaml
check "kubernetes-validate --strict -k 1.35.0 (all renders + CRD)" \
  "$KV" --strict --quiet -k 1.35.0 "$OUT"/*.yaml crds/predictivescalers.prescale.dev.yaml

check "refuses replicaCount 2 without leader election" \
  refuse "more than one replica needs leaderElection.enabled=true" --set replicaCount=2
check "refuses an unknown key (schema)" refuse "additional properties 'replicas' not allowed" --set replicas=2
check "refuses \"default\" defined twice" \
  refuse 'the source "default" is defined twice' --set prometheus.url=http://p:9090 \
  --set 'sources[0].name=default' --set 'sources[0].url=http://q:9090'
check "refuses a secret reference without a key (schema)" \
  refuse "missing property 'key'" --set prometheus.url=http://p:9090 --set prometheus.bearerTokenSecret.name=s
check "refuses a URL as a source name (schema)" \
  refuse "/sources/0/name" --set 'sources[0].name=http://evil' --set 'sources[0].url=http://q:9090'
check "refuses a bad log format (schema)" refuse "/logFormat" --set logFormat=xml
check "refuses drainAware on Kubernetes 1.29 with the admission policy on" \
  refuse "Kubernetes v1.29.0 has no admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy" \
  --kube-version 1.29.0 --set drainAware.enabled=true
check "refuses an option's namespace that is not watched" \
  refuse 'floorMode.namespaces lists "team-c", which watchNamespaces does not' \
  --set 'watchNamespaces={team-a}' --set floorMode.enabled=true --set 'floorMode.namespaces={team-c}'

mapfile -t scalers < <(grep -l '^kind: PredictiveScaler' examples/*.yaml tests/e2e/*.yaml)
check "${#scalers[@]} PredictiveScalers against the CRD schema" \
  "$PY" tests/harness/validate_cr.py crds/predictivescalers.prescale.dev.yaml "${scalers[@]}"
typo_is_refused() { # the validator is strict: a misspelt field fails
  sed 's/leadTime:/leadTme:/' examples/litellm.yaml >"$OUT/typo.yaml"
  ! "$PY" tests/harness/validate_cr.py crds/predictivescalers.prescale.dev.yaml "$OUT/typo.yaml" >"$OUT/typo.log" &&
    grep -q "'leadTme' was unexpected" "$OUT/typo.log"
}
check "a misspelt field in a PredictiveScaler is refused" typo_is_refused
check "actionlint .github/workflows/*.yml" node scripts/actionlint.cjs .github/workflows/*.yml

echo "==> chart checks: $passed passed, ${#failed[@]} failed in $(($(date +%s) - t_all))s"
[[ ${#failed[@]} -eq 0 ]] || { echo "failed: ${failed[*]}"; exit 1; }
