#!/usr/bin/env bash
# rollback.sh ENV: undo ENV's last release by reverting its commit in the delivery repository; the
# reconciler applies the revert. Never kubectl: the cluster follows Git, and a hand change would be
# reverted at the next reconciliation (or, worse, kept until someone forgets it).
set -euo pipefail

echo "rollback.sh: TODO (README, task 4)" >&2
exit 1
