# Lab 6 reference: our own rules for remediation plans, added to platform/policy/plan.rego (same
# package, so they extend its deny and needs_approval). The agent evaluates both with `opa eval`.
package opslab.plan

# Services one plan changes (node steps aside).
changed_services := {step.arguments.service | some step in input.plan.steps; step.arguments.service}

needs_approval contains msg if {
	count(changed_services) > 1
	msg := sprintf("the plan changes %v services at once (%v): one at a time, or a human agrees", [count(changed_services), concat(", ", sort(changed_services))])
}

deployed_images(service) := {r.image | some r in input.histories[service]}

deny contains msg if {
	some step in input.plan.steps
	step.tool == "set_image"
	not step.arguments.image in deployed_images(step.arguments.service)
	msg := sprintf("step %v sets %v to %v, which it never ran: roll back only to a version that was deployed", [step.id, step.arguments.service, step.arguments.image])
}
