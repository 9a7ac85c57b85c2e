#!/usr/bin/env bash
# Installs the chart for the kind e2e into the cluster KUBECONFIG points at: the CRD, then the
# chart with tests/e2e/values.yaml, waiting until the operator is ready. Prometheus and the demo
# workload come from tests/e2e/{prometheus,demo}.yaml (tests/e2e_kind.rs applies them too).
#   IMAGE_REPOSITORY=prescale IMAGE_TAG=e2e HELM=helm KUBECTL=kubectl bash tests/e2e/install.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
HELM="${HELM:-helm}"
KUBECTL="${KUBECTL:-kubectl}"
"$KUBECTL" apply --server-side -f charts/prescale/crds/
"$KUBECTL" wait --for=condition=Established crd/predictivescalers.prescale.dev --timeout=60s
"$KUBECTL" create namespace prescale-e2e --dry-run=client -o yaml | "$KUBECTL" apply -f -
"$HELM" upgrade --install prescale charts/prescale --namespace prescale-system --create-namespace \
  -f tests/e2e/values.yaml \
  --set image.repository="${IMAGE_REPOSITORY:-prescale}" --set image.tag="${IMAGE_TAG:-e2e}" \
  --wait --timeout 5m
"$KUBECTL" -n prescale-system rollout status deploy/prescale --timeout=2m
