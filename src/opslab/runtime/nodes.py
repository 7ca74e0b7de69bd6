"""The simulated worker nodes: Node objects that KWOK keeps alive.

Nodes are named kwok-node-0 .. kwok-node-(N-1), spread round-robin over the zones, and the last
``tainted_nodes`` of them carry the taint opslab.dev/dedicated=batch:NoSchedule, so scheduling
labs have a node that only tolerating pods may use.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubernetes import client
from kubernetes.client.rest import ApiException

from opslab.primitives.readiness import ProbeResult
from opslab.runtime.components.kwok import NODE_ANNOTATION
from opslab.settings import Cluster

NODE_PREFIX = "kwok-node-"
MANAGED_LABEL = "opslab.dev/managed"
TAINT_KEY = "opslab.dev/dedicated"
TAINT_VALUE = "batch"
CAPACITY = {"cpu": "4", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi"}


@dataclass(frozen=True)
class NodeSpec:
    name: str
    zone: str
    tainted: bool


def plan(cluster: Cluster) -> list[NodeSpec]:
    """The nodes the settings ask for."""
    first_tainted = cluster.nodes - min(cluster.tainted_nodes, max(cluster.nodes - 1, 0))
    return [
        NodeSpec(f"{NODE_PREFIX}{i}", cluster.zones[i % len(cluster.zones)], i >= first_tainted)
        for i in range(cluster.nodes)
    ]


def manifest(spec: NodeSpec) -> client.V1Node:
    labels = {
        "kubernetes.io/hostname": spec.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": "kwok.sim.4x16",
        "topology.kubernetes.io/region": "opslab-local",
        "topology.kubernetes.io/zone": spec.zone,
        "type": "kwok",
        MANAGED_LABEL: "true",
    }
    taints = [client.V1Taint(key=TAINT_KEY, value=TAINT_VALUE, effect="NoSchedule")] if spec.tainted else None
    return client.V1Node(
        metadata=client.V1ObjectMeta(
            name=spec.name,
            labels=labels,
            annotations={NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
        ),
        spec=client.V1NodeSpec(taints=taints),
        status=client.V1NodeStatus(allocatable=CAPACITY, capacity=CAPACITY),
    )


def reconcile(core: client.CoreV1Api, cluster: Cluster) -> tuple[list[str], list[str]]:
    """Create missing nodes and delete surplus ones; return (created, deleted) names."""
    wanted = {spec.name: spec for spec in plan(cluster)}
    existing = {_name(n) for n in core.list_node(label_selector=f"{MANAGED_LABEL}=true").items}
    created, deleted = [], []
    for name, spec in wanted.items():
        if name in existing:
            continue
        try:
            core.create_node(manifest(spec))
            created.append(name)
        except ApiException as exc:
            if exc.status != 409:
                raise
    for name in sorted(existing - set(wanted)):
        core.delete_node(name)
        deleted.append(name)
    return created, deleted


def _name(node: client.V1Node) -> str:
    return str(node.metadata.name) if node.metadata else ""


def is_ready(node: client.V1Node) -> bool:
    conditions = (node.status.conditions if node.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def readiness(core: client.CoreV1Api, cluster: Cluster) -> ProbeResult:
    """Ready when every planned node reports Ready=True."""
    wanted = {spec.name for spec in plan(cluster)}
    nodes = core.list_node(label_selector=f"{MANAGED_LABEL}=true").items
    ready = {_name(n) for n in nodes if is_ready(n)}
    missing = sorted(wanted - ready)
    if missing:
        return ProbeResult.failed(f"{len(wanted) - len(missing)}/{len(wanted)} nodes Ready (waiting for {missing[0]})")
    return ProbeResult.passed(f"{len(wanted)} nodes Ready")
