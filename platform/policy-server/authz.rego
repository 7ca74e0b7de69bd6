# The policy server's own access rules (OPA's system.authz, enforced with --authorization=basic).
# Anyone on this machine may ask it for a decision or read a document; nobody may change a policy
# or its data over the API (an agent under test could otherwise rewrite the rules that check it).
# The policy changes only through the files of platform/policy, which the server watches.
package system.authz

default allow := false

allow if {
	input.method == "GET"
	input.path == ["health"]
}

# POST /v1/data/<path> evaluates a document with an input (a decision); GET reads one.
allow if {
	input.method in {"GET", "POST"}
	input.path[0] == "v1"
	input.path[1] == "data"
}
