#!/usr/bin/env bash
# promote.sh FROM TO: promote the release FROM runs to TO (dev -> staging -> prod), as a commit to
# the delivery repository, and only through the gate:
#   1. FROM is healthy: its web Kustomization is Ready at the revision Git has now, and its
#      Deployment runs exactly the pinned image with every replica available;
#   2. FROM's error budget is not burning: web_error_budget_burn_rate{window="1h"} for its
#      namespace, from Prometheus, is below BURN_LIMIT (no data is a refusal: unknown is not safe);
#   3. TO rendered with the release passes the policy (opa eval of policy/ on kubectl kustomize);
#   4. for prod, approvals/prod/<version>.yaml in the delivery repository names the same digest.
# It exits non-zero, with the reason, and commits nothing when a gate refuses.
#
# Environment (defaults fit `make up`): DELIVERY_REPO, NAMESPACE_PREFIX, OPSLAB_PROMETHEUS_URL,
# BURN_LIMIT, PYTHON, CRANE, OPA, KUBECTL.
set -euo pipefail

echo "promote.sh: TODO (README, task 3)" >&2
exit 1
