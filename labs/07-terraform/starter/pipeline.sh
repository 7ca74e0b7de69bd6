#!/usr/bin/env bash
# Task 5: fmt -check, validate, test, plan -out, the policy on the plan's JSON, then apply exactly
# that plan. See the README.
set -euo pipefail
echo "pipeline.sh: TODO" >&2
exit 1
