package delivery_test

import rego.v1

import data.delivery

pinned := "127.0.0.1:15000/lab8/web@sha256:1e9d6538d44b5edcb86b145513860b751dafc1c22c496f213528b921703bee9e"

deployment(image, resources) := {
	"kind": "Deployment",
	"metadata": {"name": "web"},
	"spec": {"template": {
		"metadata": {"labels": {"app.kubernetes.io/name": "web", "opslab.dev/runtime": "registry"}},
		"spec": {"containers": [{"name": "web", "image": image, "resources": resources}]},
	}},
}

bounded := {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}}

pdb := {"kind": "PodDisruptionBudget", "metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": "web"}}}}

test_a_pinned_bounded_budgeted_release_passes if {
	count(delivery.deny) == 0 with input as [deployment(pinned, bounded), pdb]
}

test_a_tag_is_denied if {
	some msg in delivery.deny with input as [deployment("127.0.0.1:15000/lab8/web:0.2.0", bounded), pdb]
	contains(msg, "not pinned by digest")
}

test_latest_is_denied_even_with_a_digest if {
	some msg in delivery.deny with input as [deployment("127.0.0.1:15000/lab8/web:latest@sha256:1e9d", bounded), pdb]
	contains(msg, "latest")
}

test_missing_limits_are_denied if {
	some msg in delivery.deny with input as [deployment(pinned, {"requests": bounded.requests}), pdb]
	contains(msg, "limits.cpu")
}

test_a_release_without_a_budget_is_denied if {
	some msg in delivery.deny with input as [deployment(pinned, bounded)]
	contains(msg, "PodDisruptionBudget")
}

test_a_budget_for_other_pods_does_not_count if {
	other := json.patch(pdb, [{"op": "replace", "path": "/spec/selector/matchLabels", "value": {"app.kubernetes.io/name": "api"}}])
	some msg in delivery.deny with input as [deployment(pinned, bounded), other]
	contains(msg, "PodDisruptionBudget")
}
