# The rules every rendered environment must pass before promote.sh commits a promotion: input is
# the list of objects `kubectl kustomize overlays/<env>` renders. `deny` is the set of reasons.
package delivery

import rego.v1

workloads := [o | some o in input; o.kind in {"Deployment", "StatefulSet"}]

containers(w) := array.concat(object.get(w.spec.template.spec, "initContainers", []), w.spec.template.spec.containers)

deny contains msg if {
	some w in workloads
	some c in containers(w)
	not contains(c.image, "@sha256:")
	msg := sprintf("%s %s: container %s runs %q, not pinned by digest (IMAGE@sha256:...)", [w.kind, w.metadata.name, c.name, c.image])
}

deny contains msg if {
	some w in workloads
	some c in containers(w)
	regex.match(`:latest(@|$)`, c.image)
	msg := sprintf("%s %s: container %s names the tag latest", [w.kind, w.metadata.name, c.name])
}

deny contains msg if {
	some w in workloads
	some c in containers(w)
	some kind in ["requests", "limits"]
	some resource in ["cpu", "memory"]
	not c.resources[kind][resource]
	msg := sprintf("%s %s: container %s sets no %s.%s", [w.kind, w.metadata.name, c.name, kind, resource])
}

deny contains msg if {
	some w in workloads
	not budgeted(w)
	msg := sprintf("%s %s: no PodDisruptionBudget selects its pods", [w.kind, w.metadata.name])
}

budgeted(w) if {
	some pdb in input
	pdb.kind == "PodDisruptionBudget"
	labels := w.spec.template.metadata.labels
	every key, value in pdb.spec.selector.matchLabels {
		labels[key] == value
	}
}

deny contains msg if {
	some w in workloads
	object.get(w.spec.template.metadata, ["labels", "opslab.dev/runtime"], "") != "registry"
	msg := sprintf("%s %s: its pods lack opslab.dev/runtime: registry (they would run an image nobody pulled)", [w.kind, w.metadata.name])
}
