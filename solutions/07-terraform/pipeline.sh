#!/usr/bin/env bash
# Lab 7's pipeline: check, test, plan, policy, then apply exactly the plan that passed.
#
#   ./pipeline.sh WORKSPACE            plan and apply dev, staging or prod
#   ./pipeline.sh WORKSPACE --plan     stop after the policy check (the plan stays in envs/WORKSPACE.tfplan)
#   ./pipeline.sh WORKSPACE --apply    apply the saved envs/WORKSPACE.tfplan (after review), nothing else
#
# Environment: KUBECONFIG (the identity that applies), STATE_NAMESPACE (where the state Secrets and
# their lock Leases live), TERRAFORM (terraform or tofu; default terraform), LOCK_TIMEOUT (how long
# to wait for the state lock; default 30s), OPA (default opa).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
tf="${TERRAFORM:-terraform}"
opa="${OPA:-opa}"
lock_timeout="${LOCK_TIMEOUT:-30s}"
envs="$here/envs"

fail() { echo "pipeline: $*" >&2; exit 1; }

workspace="${1:-}"
mode="${2:-}"
case "$workspace" in
  dev|staging|prod) ;;
  *) fail "usage: pipeline.sh dev|staging|prod [--plan|--apply] (got '${workspace}')" ;;
esac
case "$mode" in
  ""|--plan|--apply) ;;
  *) fail "usage: pipeline.sh dev|staging|prod [--plan|--apply] (got '${mode}')" ;;
esac
[[ -n "${KUBECONFIG:-}" && -r "${KUBECONFIG%%:*}" ]] || fail "KUBECONFIG must name a readable kubeconfig"
[[ -n "${STATE_NAMESPACE:-}" ]] || fail "STATE_NAMESPACE must name the namespace that holds the state"

plan="$envs/$workspace.tfplan"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
"$tf" -chdir="$envs" init -input=false -no-color -reconfigure \
  -backend-config="namespace=$STATE_NAMESPACE" -backend-config="config_path=${KUBECONFIG%%:*}" >"$log" 2>&1 \
  || { cat "$log" >&2; fail "init failed"; }
env -u TF_WORKSPACE "$tf" -chdir="$envs" workspace select -or-create -no-color "$workspace" >"$log" 2>&1 \
  || { cat "$log" >&2; fail "cannot select or create workspace $workspace"; }
export TF_WORKSPACE="$workspace"

policy() {
  echo "pipeline: policy"
  "$tf" -chdir="$envs" show -json "$plan" >"$envs/$workspace.plan.json" || fail "cannot read the plan $plan"
  denials="$("$opa" eval --format raw -d "$here/policy" -i "$envs/$workspace.plan.json" \
    'concat("\n", sort([m | some m in data.terraform.plan.deny]))')" || fail "opa could not evaluate the policy"
  if [[ -n "$denials" ]]; then
    echo "$denials" | sed 's/^/pipeline: denied: /' >&2
    fail "the policy denies this plan; nothing was applied"
  fi
}

if [[ "$mode" != "--apply" ]]; then
echo "pipeline: fmt, validate and the module's tests"
"$tf" fmt -check -recursive "$here/modules" "$envs" >/dev/null || fail "run '$tf fmt -recursive' first: files are not formatted"
"$tf" -chdir="$envs" validate -no-color >/dev/null || fail "the configuration is not valid: run '$tf -chdir=envs validate'"
(cd "$here/modules/tenant" && "$tf" init -input=false -no-color >/dev/null && "$tf" test -no-color >/dev/null) \
  || fail "the module's tests fail: run '$tf test' in modules/tenant"

echo "pipeline: plan $workspace"
rm -f "$plan"
if ! "$tf" -chdir="$envs" plan -input=false -no-color -lock-timeout="$lock_timeout" \
    -var-file="$workspace.tfvars" -var="kubeconfig=${KUBECONFIG%%:*}" -out="$plan" >"$log" 2>&1; then
  if grep -q "Error acquiring the state lock" "$log"; then
    fail "the state of workspace $workspace is locked by someone else (waited $lock_timeout); nothing was planned or applied"
  fi
  cat "$log" >&2
  fail "the plan failed"
fi

policy
[[ "$mode" == "--plan" ]] && { echo "pipeline: plan $plan passed policy; apply it with: pipeline.sh $workspace --apply"; exit 0; }
else
  [[ -f "$plan" ]] || fail "no saved plan $plan: run 'pipeline.sh $workspace --plan' first"
  policy  # again: the file applied is the file that passed
fi

echo "pipeline: apply the plan that passed"
if ! "$tf" -chdir="$envs" apply -input=false -no-color -lock-timeout="$lock_timeout" "$plan" >"$log" 2>&1; then
  if grep -q "Error acquiring the state lock" "$log"; then
    fail "the state of workspace $workspace is locked by someone else (waited $lock_timeout); nothing was applied"
  fi
  if grep -qi "stale" "$log"; then
    fail "the saved plan is stale (the state changed since it was made); plan again"
  fi
  cat "$log" >&2
  fail "the apply failed"
fi
rm -f "$plan"
echo "pipeline: $workspace applied"
