# The policy every agent action passes before it runs (OPA, served by `opslab up` on 127.0.0.1).
#
# The toolbox (opslab.agent) asks POST /v1/data/opslab/agent/decision with an input like
#   {"tool": "scale", "target": {"kind": "Deployment", "namespace": "shop", "name": "catalog"},
#    "args": {"replicas": 3}, "recent": [{"tool": "scale", "target": "shop/catalog", "seconds_ago": 12}]}
# and runs the action only when the decision allows it; a denial's reasons go back to the caller.
# `opa test platform/policy` runs agent_test.rego (make test does too).
package opslab.agent

actions := {
	"scale", "rollout_undo", "rollout_restart", "cordon", "uncordon", "drain",
	"patch_resources", "set_image", "terraform_plan", "terraform_apply", "run_playbook",
}

# Namespaced actions act only on the shop's workloads, never in the platform's namespaces. A
# grading run evaluates this policy in an OPA of its own, with its copy of the workloads named in
# data.opslab.config.workload_namespaces; the platform's policy server has no such data, and its
# API refuses data written to it (platform/policy-server/authz.rego).
workload_namespaces := {ns | some ns in data.opslab.config.workload_namespaces} if {
	data.opslab.config.workload_namespaces
} else := {"shop"}

# Services the shop cannot run without: never scaled to zero.
protected := {"gateway", "catalog", "cart", "checkout", "payments", "orders-worker", "fulfilment"}

max_replicas := 10

# The playbooks (platform/playbooks) an agent may run.
playbooks := {"scale-to-intended"}

# At most rate_limit actions on one target within rate_window seconds.
rate_limit := 3

rate_window := 60

# A terraform apply must apply the plan that was shown, at most plan_max_age seconds ago.
plan_max_age := 300

target_key := sprintf("%s/%s", [input.target.namespace, input.target.name]) if input.target.namespace

target_key := input.target.name if not input.target.namespace

deny contains msg if {
	not input.tool in actions
	msg := sprintf("%v is not an action the toolbox offers", [input.tool])
}

deny contains msg if {
	input.args.verb == "delete"
	msg := "deleting is not allowed: mitigate by rolling back, scaling or restarting instead"
}

deny contains msg if {
	input.target.kind == "Deployment"
	not input.target.namespace in workload_namespaces
	msg := sprintf("namespace %v is not a workload namespace: agents act only in %v", [input.target.namespace, concat(", ", workload_namespaces)])
}

deny contains msg if {
	input.tool == "scale"
	input.args.replicas < 1
	input.target.name in protected
	msg := sprintf("%v is a protected service: it is never scaled to zero", [input.target.name])
}

deny contains msg if {
	input.tool == "scale"
	input.args.replicas > max_replicas
	msg := sprintf("%v replicas is above the limit of %v", [input.args.replicas, max_replicas])
}

deny contains msg if {
	input.tool in {"cordon", "uncordon", "drain"}
	input.target.kind != "Node"
	msg := sprintf("%v acts on nodes, not on a %v", [input.tool, input.target.kind])
}

deny contains msg if {
	input.tool == "set_image"
	repository(input.args.image) != repository(input.args.current_image)
	msg := sprintf("set_image may change the tag, not the repository (%v -> %v)", [input.args.current_image, input.args.image])
}

deny contains msg if {
	input.tool == "run_playbook"
	not input.args.playbook in playbooks
	msg := sprintf("playbook %v is not on the allow-list (%v)", [input.args.playbook, concat(", ", playbooks)])
}

deny contains msg if {
	input.tool == "terraform_apply"
	not plan_fresh
	msg := "terraform apply needs the plan just shown: run terraform_plan first (plans expire after 300 s)"
}

deny contains msg if {
	recent := [a | some a in input.recent; a.target == target_key; a.seconds_ago < rate_window]
	count(recent) >= rate_limit
	msg := sprintf("rate limit: %v actions on %v within %v s already", [count(recent), target_key, rate_window])
}

plan_fresh if {
	input.plan.shown_seconds_ago <= plan_max_age
	input.plan.digest == input.args.plan_digest
}

# The image reference without its tag (the part before the last colon).
repository(image) := substring(image, 0, colons[count(colons) - 1]) if {
	colons := indexof_n(image, ":")
	count(colons) > 0
}

repository(image) := image if not contains(image, ":")

default allow := false

allow if count(deny) == 0

decision := {"allow": allow, "reasons": sort([m | some m in deny])}
