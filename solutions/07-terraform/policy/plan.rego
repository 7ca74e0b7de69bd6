# Policy on a saved plan (`terraform show -json plan > plan.json`; `opa eval -d policy -i plan.json
# data.terraform.plan.deny`): every message is a reason the plan must not be applied.
package terraform.plan

import rego.v1

required_labels := {"opslab.dev/owner", "opslab.dev/team", "opslab.dev/environment"}

bounded := {"requests.cpu", "requests.memory", "limits.cpu", "limits.memory", "pods"}

changes := [rc | some rc in input.resource_changes; rc.mode == "managed"]

writes(rc) if {
	some action in rc.change.actions
	action in {"create", "update"}
}

# A namespace the plan keeps or makes, with what it will look like.
namespaces contains ns if {
	some rc in changes
	rc.type == "kubernetes_namespace"
	not "delete" in rc.change.actions
	ns := rc.change.after.metadata[0]
}

deny contains msg if {
	some rc in changes
	rc.type == "kubernetes_namespace"
	"delete" in rc.change.actions
	before := rc.change.before.metadata[0]
	object.get(before, ["labels", "opslab.dev/environment"], "") == "prod"
	msg := sprintf("%s: the plan deletes prod namespace %q; a prod namespace is removed by hand, never by a pipeline", [rc.address, before.name])
}

deny contains msg if {
	some rc in changes
	rc.type == "kubernetes_namespace"
	writes(rc)
	labels := object.get(rc.change.after.metadata[0], "labels", {})
	some label in required_labels
	not labels[label]
	msg := sprintf("%s: namespace %q has no %s label; every namespace names its owner, team and environment", [rc.address, rc.change.after.metadata[0].name, label])
}

deny contains msg if {
	some ns in namespaces
	not bounded_quota(ns.name)
	msg := sprintf("namespace %q has no ResourceQuota that bounds %s", [ns.name, concat(", ", sort(bounded))])
}

bounded_quota(namespace) if {
	some rc in changes
	rc.type == "kubernetes_resource_quota"
	not "delete" in rc.change.actions
	quota := rc.change.after
	quota.metadata[0].namespace == namespace
	every key in bounded {
		object.get(quota.spec[0].hard, key, "") != ""
	}
}
