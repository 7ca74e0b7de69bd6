# Your rules for remediation plans, added to platform/policy/plan.rego (same package: they extend
# its deny and needs_approval sets). Input: {"plan": ..., "deployments": [...], "histories": {service: [...]}}.
package opslab.plan

# TODO (task 5): a plan that changes more than one service needs approval.
# TODO (task 5): set_image only to an image the service has run before (input.histories[service][_].image).
