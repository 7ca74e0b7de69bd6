# Task 3: `opa test policy`. Test decisions, not wording: count(plan.deny) == 0 for a plan that must
# pass, count(plan.deny) > 0 for each kind of plan that must not.
package terraform.plan_test

import rego.v1

import data.terraform.plan
