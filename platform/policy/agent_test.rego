# Unit tests of agent.rego: `opa test platform/policy -v` (run by make test).
package opslab.agent_test

import data.opslab.agent

deployment(name) := {"kind": "Deployment", "namespace": "shop", "name": name}

test_scaling_back_to_the_intended_size_is_allowed if {
	agent.allow with input as {"tool": "scale", "target": deployment("catalog"), "args": {"replicas": 3}, "recent": []}
}

test_scaling_a_protected_service_to_zero_is_denied if {
	d := agent.decision with input as {"tool": "scale", "target": deployment("payments"), "args": {"replicas": 0}, "recent": []}
	not d.allow
	d.reasons == ["payments is a protected service: it is never scaled to zero"]
}

test_scaling_above_the_limit_is_denied if {
	not agent.allow with input as {"tool": "scale", "target": deployment("cart"), "args": {"replicas": 50}, "recent": []}
}

test_a_rollback_is_allowed if {
	agent.allow with input as {"tool": "rollout_undo", "target": deployment("gateway"), "args": {}, "recent": []}
}

test_nothing_in_platform_namespaces if {
	d := agent.decision with input as {
		"tool": "rollout_restart",
		"target": {"kind": "Deployment", "namespace": "kube-system", "name": "coredns"},
		"args": {}, "recent": [],
	}
	not d.allow
	startswith(d.reasons[0], "namespace kube-system is not a workload namespace")
}

test_a_grading_run_names_its_own_workload_namespace if {
	run := {"kind": "Deployment", "namespace": "grade-g1234567-agent", "name": "catalog"}
	agent.allow with input as {"tool": "rollout_undo", "target": run, "args": {}, "recent": []}
		with data.opslab.config.workload_namespaces as ["grade-g1234567-agent"]
	not agent.allow with input as {"tool": "rollout_undo", "target": deployment("catalog"), "args": {}, "recent": []}
		with data.opslab.config.workload_namespaces as ["grade-g1234567-agent"]
	not agent.allow with input as {"tool": "rollout_undo", "target": run, "args": {}, "recent": []}
}

test_deletes_are_denied if {
	not agent.allow with input as {"tool": "scale", "target": deployment("cart"), "args": {"replicas": 2, "verb": "delete"}, "recent": []}
}

test_an_unknown_tool_is_denied if {
	d := agent.decision with input as {"tool": "delete_namespace", "target": {"kind": "Namespace", "name": "shop"}, "args": {}, "recent": []}
	not d.allow
	d.reasons == ["delete_namespace is not an action the toolbox offers"]
}

test_the_rate_limit_counts_recent_actions_on_the_same_target if {
	recent := [
		{"tool": "rollout_restart", "target": "shop/cart", "seconds_ago": 5},
		{"tool": "rollout_restart", "target": "shop/cart", "seconds_ago": 20},
		{"tool": "scale", "target": "shop/cart", "seconds_ago": 50},
	]
	d := agent.decision with input as {"tool": "rollout_restart", "target": deployment("cart"), "args": {}, "recent": recent}
	not d.allow
	d.reasons == ["rate limit: 3 actions on shop/cart within 60 s already"]
}

test_old_actions_and_other_targets_do_not_count if {
	recent := [
		{"tool": "rollout_restart", "target": "shop/cart", "seconds_ago": 70},
		{"tool": "rollout_restart", "target": "shop/cart", "seconds_ago": 80},
		{"tool": "rollout_restart", "target": "shop/catalog", "seconds_ago": 5},
		{"tool": "rollout_restart", "target": "shop/catalog", "seconds_ago": 6},
	]
	agent.allow with input as {"tool": "rollout_restart", "target": deployment("cart"), "args": {}, "recent": recent}
}

test_node_actions_only_on_nodes if {
	agent.allow with input as {"tool": "cordon", "target": {"kind": "Node", "name": "kwok-node-1"}, "args": {}, "recent": []}
	not agent.allow with input as {"tool": "drain", "target": deployment("cart"), "args": {}, "recent": []}
}

test_set_image_may_change_the_tag_not_the_repository if {
	agent.allow with input as {
		"tool": "set_image", "target": deployment("cart"), "recent": [],
		"args": {"image": "opslab/shop-cart:1.0.0", "current_image": "opslab/shop-cart:1.2.0"},
	}
	not agent.allow with input as {
		"tool": "set_image", "target": deployment("cart"), "recent": [],
		"args": {"image": "evil/miner:latest", "current_image": "opslab/shop-cart:1.2.0"},
	}
}

test_terraform_apply_needs_the_plan_just_shown if {
	agent.allow with input as {
		"tool": "terraform_apply", "target": {"kind": "Terraform", "name": "platform"}, "recent": [],
		"args": {"plan_digest": "abc"}, "plan": {"shown_seconds_ago": 30, "digest": "abc"},
	}
	not agent.allow with input as {
		"tool": "terraform_apply", "target": {"kind": "Terraform", "name": "platform"}, "recent": [],
		"args": {"plan_digest": "abc"}, "plan": {"shown_seconds_ago": 400, "digest": "abc"},
	}
	not agent.allow with input as {
		"tool": "terraform_apply", "target": {"kind": "Terraform", "name": "platform"}, "recent": [],
		"args": {"plan_digest": "abc"}, "plan": {"shown_seconds_ago": 30, "digest": "other"},
	}
	not agent.allow with input as {
		"tool": "terraform_apply", "target": {"kind": "Terraform", "name": "platform"}, "recent": [], "args": {"plan_digest": "abc"},
	}
}

test_an_allow_listed_playbook_is_allowed if {
	agent.allow with input as {"tool": "run_playbook", "target": deployment("catalog"), "args": {"playbook": "scale-to-intended"}, "recent": []}
}

test_a_playbook_off_the_allow_list_is_denied if {
	d := agent.decision with input as {"tool": "run_playbook", "target": deployment("catalog"), "args": {"playbook": "wipe-cluster"}, "recent": []}
	not d.allow
	d.reasons == ["playbook wipe-cluster is not on the allow-list (scale-to-intended)"]
}
