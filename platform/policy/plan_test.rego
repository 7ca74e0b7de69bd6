# Unit tests of plan.rego: `opa test platform/policy -v` (run by make test).
package opslab.plan_test

import data.opslab.plan

step(id, tool, arguments) := {
	"id": id, "tool": tool, "arguments": arguments, "expect": "it recovers",
	"verify": {"promql": "up", "below": 1, "within_seconds": 60}, "rollback": null,
}

diagnosis(service, fault) := [{"service": service, "fault_type": fault, "evidence": ["seen"]}]

world := {"deployments": [{"name": "catalog", "replicas": 1, "intended": 3}, {"name": "gateway", "replicas": 2, "intended": 2}], "histories": {}}

with_plan(p) := object.union(world, {"plan": p})

test_a_rollback_of_the_diagnosed_service_is_allowed_without_approval if {
	d := plan.decision with input as with_plan({
		"summary": "undo", "diagnosis": diagnosis("gateway", "bad-rollout"),
		"steps": [step("undo-gateway", "rollout_undo", {"service": "gateway"})],
	})
	d.allow
	d.needs_approval == []
}

test_acting_on_a_service_the_diagnosis_does_not_name_is_denied if {
	d := plan.decision with input as with_plan({
		"summary": "undo", "diagnosis": diagnosis("gateway", "bad-rollout"),
		"steps": [step("undo-catalog", "rollout_undo", {"service": "catalog"})],
	})
	not d.allow
	d.deny == ["step undo-catalog acts on catalog, which the diagnosis does not name: act only where you found the fault"]
}

test_a_drain_without_a_node_fault_is_denied if {
	d := plan.decision with input as with_plan({
		"summary": "drain", "diagnosis": diagnosis("gateway", "latency"),
		"steps": [step("drain-n1", "drain", {"node": "n1"})],
	})
	not d.allow
}

test_a_drain_for_a_node_fault_needs_approval if {
	d := plan.decision with input as with_plan({
		"summary": "drain", "diagnosis": diagnosis("node", "node-not-ready"),
		"steps": [step("drain-n1", "drain", {"node": "n1"})],
	})
	d.allow
	d.needs_approval == ["step drain-n1 drains node n1: every pod on it moves"]
}

test_scaling_to_the_intended_size_from_one_needs_approval_above_twice if {
	d := plan.decision with input as with_plan({
		"summary": "scale", "diagnosis": diagnosis("catalog", "capacity-loss"),
		"steps": [step("scale-catalog", "scale", {"service": "catalog", "replicas": 3})],
	})
	d.allow
	count(d.needs_approval) == 1
	small := plan.decision with input as with_plan({
		"summary": "scale", "diagnosis": diagnosis("catalog", "capacity-loss"),
		"steps": [step("scale-catalog", "scale", {"service": "catalog", "replicas": 2})],
	})
	small.needs_approval == []
}

test_a_quiet_plan_that_changes_something_is_denied if {
	d := plan.decision with input as with_plan({
		"summary": "nothing", "diagnosis": diagnosis("none", "none"),
		"steps": [step("restart-gateway", "rollout_restart", {"service": "gateway"})],
	})
	not d.allow
	"a plan that finds nothing wrong must not change anything" in d.deny
}

test_a_hand_made_template_change_needs_approval if {
	d := plan.decision with input as with_plan({
		"summary": "cpu", "diagnosis": diagnosis("gateway", "cpu-throttling"),
		"steps": [step("cpu-gateway", "patch_resources", {"service": "gateway", "cpu_limit": "500m"})],
	})
	d.allow
	count(d.needs_approval) == 1
}
