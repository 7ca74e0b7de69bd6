#!/usr/bin/env bash
# Task 5: fmt -check, validate, test, plan -out, the policy on the plan's JSON, then apply exactly
# that plan. See the README.
#
#   ./pipeline.sh WORKSPACE            plan and apply dev, staging or prod
#   ./pipeline.sh WORKSPACE --plan     stop after the policy check (the plan stays in envs/WORKSPACE.tfplan)
#   ./pipeline.sh WORKSPACE --apply    apply the saved envs/WORKSPACE.tfplan, nothing else
#
# Environment: KUBECONFIG, STATE_NAMESPACE, TERRAFORM (default terraform), LOCK_TIMEOUT (default 30s),
# OPA (default opa).
set -euo pipefail
echo "pipeline.sh: TODO" >&2
exit 1
