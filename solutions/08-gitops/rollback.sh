#!/usr/bin/env bash
# rollback.sh ENV: undo ENV's last release by reverting its commit in the delivery repository; the
# reconciler applies the revert. Never kubectl: the cluster follows Git, and a hand change would be
# reverted at the next reconciliation (or, worse, kept until someone forgets it).
set -euo pipefail

env=${1:?usage: rollback.sh ENV (dev, staging or prod)}
DELIVERY_REPO=${DELIVERY_REPO:-${OPSLAB_GIT_URL:?source .opslab/env first}/lab8/delivery.git}
git() { command git -c user.name=rollback -c user.email=rollback@opslab.invalid "$@"; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q --branch main "$DELIVERY_REPO" "$work/delivery"
cd "$work/delivery"
last=$(git log -1 --format=%H -- "overlays/$env/kustomization.yaml")
[ -n "$last" ] || { echo "rollback: nothing was ever released to $env" >&2; exit 1; }
if [ -z "$(git log -1 --format=%P "$last" | cut -d' ' -f1)" ]; then
  echo "rollback: $env's only commit is the first one; there is nothing before it" >&2
  exit 1
fi
git revert --no-edit "$last" >/dev/null
git push -q origin HEAD:main
echo "rollback: reverted $(git log -1 --format=%s "$last" | head -1) ($last) in $env"
