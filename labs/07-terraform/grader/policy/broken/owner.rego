# The grader's own plan policy, written apart from the reference solution: the learner's tests
# must pass against it (they test decisions, not wording).
package terraform.plan

import rego.v1

deny contains "grader: prod namespace deleted" if {
	some rc in input.resource_changes
	rc.type == "kubernetes_namespace"
	"delete" in rc.change.actions
	rc.change.before.metadata[0].labels["opslab.dev/environment"] == "prod"
}

deny contains sprintf("grader: %s lacks label %s", [rc.address, label]) if {
	some rc in input.resource_changes
	rc.type == "kubernetes_namespace"
	some action in rc.change.actions
	action in {"create", "update"}
	some label in ["opslab.dev/team", "opslab.dev/environment"]
	not rc.change.after.metadata[0].labels[label]
}

deny contains sprintf("grader: %s unbounded", [name]) if {
	some rc in input.resource_changes
	rc.type == "kubernetes_namespace"
	not "delete" in rc.change.actions
	name := rc.change.after.metadata[0].name
	not quota_bounds(name)
}

quota_bounds(name) if {
	some q in input.resource_changes
	q.type == "kubernetes_resource_quota"
	not "delete" in q.change.actions
	q.change.after.metadata[0].namespace == name
	hard := q.change.after.spec[0].hard
	hard.pods
	hard["requests.cpu"]
	hard["requests.memory"]
	hard["limits.cpu"]
	hard["limits.memory"]
}
