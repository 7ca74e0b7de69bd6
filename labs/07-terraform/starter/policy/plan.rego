# Task 3: policy on a saved plan (`terraform show -json PLAN > plan.json`). Every message in deny is
# a reason the plan must not be applied. See the README for the three rules.
package terraform.plan

import rego.v1

deny contains msg if {
	false # TODO
	msg := ""
}
