package system.authz_test

import data.system.authz

test_a_decision_is_allowed if {
	authz.allow with input as {"method": "POST", "path": ["v1", "data", "opslab", "agent", "decision"]}
}

test_health_is_allowed if {
	authz.allow with input as {"method": "GET", "path": ["health"]}
}

test_a_policy_cannot_be_replaced if {
	not authz.allow with input as {"method": "PUT", "path": ["v1", "policies", "agent.rego"]}
}

test_a_policy_cannot_be_deleted if {
	not authz.allow with input as {"method": "DELETE", "path": ["v1", "policies", "agent.rego"]}
}

test_data_cannot_be_written if {
	not authz.allow with input as {"method": "PUT", "path": ["v1", "data", "opslab", "agent", "protected"]}
	not authz.allow with input as {"method": "PATCH", "path": ["v1", "data", "opslab"]}
	not authz.allow with input as {"method": "DELETE", "path": ["v1", "data", "opslab"]}
}

test_ad_hoc_queries_are_refused if {
	not authz.allow with input as {"method": "POST", "path": ["v1", "query"]}
}
