# Tests of what the policy decides (allow, how many denials and approvals), not of its wording:
# they hold for any correct policy.
package opslab.plan_remediation_test

import data.opslab.plan

step(id, tool, arguments) := {
	"id": id, "tool": tool, "arguments": arguments, "expect": "it recovers",
	"verify": {"promql": "up", "below": 1, "within_seconds": 60}, "rollback": null,
}

world := {
	"deployments": [{"name": "cart", "replicas": 2}, {"name": "payments", "replicas": 2}],
	"histories": {"payments": [{"revision": 1, "image": "opslab/shop-payments:1.0.0"}, {"revision": 2, "image": "opslab/shop-payments:1.0.1"}]},
}

two_findings := [
	{"service": "payments", "fault_type": "latency", "evidence": ["slow"]},
	{"service": "cart", "fault_type": "crash-loop", "evidence": ["restarts"]},
]

test_two_services_at_once_need_approval if {
	d := plan.decision with input as object.union(world, {"plan": {"summary": "two", "diagnosis": two_findings, "steps": [
		step("undo-payments", "rollout_undo", {"service": "payments"}),
		step("undo-cart", "rollout_undo", {"service": "cart"}),
	]}})
	d.allow
	count(d.needs_approval) == 1
}

test_one_service_needs_no_approval if {
	d := plan.decision with input as object.union(world, {"plan": {"summary": "one", "diagnosis": two_findings, "steps": [
		step("undo-payments", "rollout_undo", {"service": "payments"}),
	]}})
	d.needs_approval == []
}

test_an_image_never_deployed_is_denied if {
	d := plan.decision with input as object.union(world, {"plan": {"summary": "img", "diagnosis": two_findings, "steps": [
		step("pin-payments", "set_image", {"service": "payments", "image": "opslab/shop-payments:0.9.0"}),
	]}})
	not d.allow
	count(d.deny) == 1
}

test_an_image_that_was_deployed_is_allowed if {
	d := plan.decision with input as object.union(world, {"plan": {"summary": "img", "diagnosis": two_findings, "steps": [
		step("pin-payments", "set_image", {"service": "payments", "image": "opslab/shop-payments:1.0.0"}),
	]}})
	d.allow
}
