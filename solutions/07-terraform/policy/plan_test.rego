package terraform.plan_test

import rego.v1

import data.terraform.plan

labels := {"opslab.dev/owner": "a.at.example.com", "opslab.dev/team": "a", "opslab.dev/environment": "prod"}

hard := {"requests.cpu": "1", "requests.memory": "1Gi", "limits.cpu": "2", "limits.memory": "2Gi", "pods": "10"}

ns(actions, before_labels, after_labels) := {
	"address": "module.tenant[\"a\"].kubernetes_namespace.this",
	"mode": "managed",
	"type": "kubernetes_namespace",
	"change": {
		"actions": actions,
		"before": {"metadata": [{"name": "a-prod", "labels": before_labels}]},
		"after": {"metadata": [{"name": "a-prod", "labels": after_labels}]},
	},
}

quota(actions, limits) := {
	"address": "module.tenant[\"a\"].kubernetes_resource_quota.this",
	"mode": "managed",
	"type": "kubernetes_resource_quota",
	"change": {"actions": actions, "after": {"metadata": [{"namespace": "a-prod"}], "spec": [{"hard": limits}]}},
}

test_a_labelled_namespace_with_a_bounded_quota_passes if {
	count(plan.deny) == 0 with input as {"resource_changes": [ns(["create"], null, labels), quota(["create"], hard)]}
}

test_an_unchanged_tenant_passes if {
	count(plan.deny) == 0 with input as {"resource_changes": [ns(["no-op"], labels, labels), quota(["no-op"], hard)]}
}

test_deleting_a_prod_namespace_is_denied if {
	count(plan.deny) > 0 with input as {"resource_changes": [ns(["delete"], labels, null)]}
}

test_replacing_a_prod_namespace_is_denied if {
	count(plan.deny) > 0 with input as {"resource_changes": [ns(["delete", "create"], labels, labels), quota(["create"], hard)]}
}

test_deleting_a_dev_namespace_is_allowed if {
	dev := json.patch(labels, [{"op": "replace", "path": "/opslab.dev~1environment", "value": "dev"}])
	count(plan.deny) == 0 with input as {"resource_changes": [ns(["delete"], dev, null)]}
}

test_a_namespace_without_an_owner_is_denied if {
	unowned := json.remove(labels, ["opslab.dev~1owner"])
	count(plan.deny) > 0 with input as {"resource_changes": [ns(["create"], null, unowned), quota(["create"], hard)]}
}

test_a_namespace_without_a_quota_is_denied if {
	count(plan.deny) > 0 with input as {"resource_changes": [ns(["create"], null, labels)]}
}

test_a_quota_without_a_pod_limit_is_denied if {
	count(plan.deny) > 0 with input as {"resource_changes": [ns(["create"], null, labels), quota(["create"], json.remove(hard, ["pods"]))]}
}

test_a_quota_being_deleted_bounds_nothing if {
	count(plan.deny) > 0 with input as {"resource_changes": [ns(["no-op"], labels, labels), quota(["delete"], hard)]}
}
