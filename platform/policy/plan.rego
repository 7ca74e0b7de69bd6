# The policy a whole remediation plan passes before its first step runs (lab 6's agents ask it with
# `opa eval`, adding their own rules in the same package). The toolbox still checks every action
# against agent.rego when it runs; this policy judges the plan as a change: where it acts, how much
# at once, and which steps need a human's approval first.
#
# Input: {"plan": <a plan, platform/agent/plan.schema.json>,
#         "deployments": [{"name", "replicas", "intended", "image"}],
#         "histories": {"<service>": [{"revision", "image", "cpu_limit", "created"}]}}
# Output: data.opslab.plan.decision = {"allow", "deny": [...], "needs_approval": [...]}.
package opslab.plan

# A scale to more than this many times the current replicas is a big change: a human approves it.
scale_factor_needing_approval := 2

diagnosed := {d.service | some d in input.plan.diagnosis}

current(service) := d if {
	some d in input.deployments
	d.name == service
}

step_service(step) := step.arguments.service

deny contains msg if {
	some step in input.plan.steps
	service := step_service(step)
	not service in diagnosed
	msg := sprintf("step %v acts on %v, which the diagnosis does not name: act only where you found the fault", [step.id, service])
}

deny contains msg if {
	some step in input.plan.steps
	step.tool in {"cordon", "drain"}
	not "node" in diagnosed
	msg := sprintf("step %v acts on a node, but the diagnosis names no node fault", [step.id])
}

deny contains msg if {
	some d in input.plan.diagnosis
	d.fault_type == "none"
	count(input.plan.steps) > 0
	msg := "a plan that finds nothing wrong must not change anything"
}

needs_approval contains msg if {
	some step in input.plan.steps
	step.tool == "drain"
	msg := sprintf("step %v drains node %v: every pod on it moves", [step.id, step.arguments.node])
}

needs_approval contains msg if {
	some step in input.plan.steps
	step.tool == "scale"
	now := current(step.arguments.service).replicas
	now > 0
	step.arguments.replicas > now * scale_factor_needing_approval
	msg := sprintf("step %v scales %v from %v to %v replicas (more than %v times)", [step.id, step.arguments.service, now, step.arguments.replicas, scale_factor_needing_approval])
}

needs_approval contains msg if {
	some step in input.plan.steps
	step.tool in {"set_image", "patch_resources"}
	msg := sprintf("step %v changes %v's pod template by hand (%v): not a rollback to a known revision", [step.id, step_service(step), step.tool])
}

default allow := false

allow if count(deny) == 0

decision := {"allow": allow, "deny": sort([m | some m in deny]), "needs_approval": sort([m | some m in needs_approval])}
