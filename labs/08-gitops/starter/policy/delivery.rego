# The rules every rendered environment must pass before promote.sh commits a promotion: input is
# the list of objects `kubectl kustomize overlays/<env>` renders. `deny` is the set of reasons.
package delivery

import rego.v1

# TODO (README, task 3): deny images not pinned by digest, the tag latest, containers without
# requests and limits for cpu and memory, workloads no PodDisruptionBudget selects, and pods
# without opslab.dev/runtime: registry.
deny := set()
