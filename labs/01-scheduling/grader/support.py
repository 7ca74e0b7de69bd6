"""Lab 1's cells: simulated nodes and a namespace of the grading run, with the learner's objects.

A cell is four KWOK nodes that only this run's pods can use (tainted with the run's id, and the
learner's pods get a matching toleration and node selector):

    a1, a2   zone-a
    b1       zone-b   (PreferNoSchedule "spot" capacity: the scheduler avoids it when it may)
    c1       zone-c   (PreferNoSchedule "spot" capacity, and NoSchedule opslab.dev/dedicated=batch)

Without a hard zone spread the scheduler puts two replicas in zone-a (its nodes score best);
without a toleration nothing runs in zone-c; with only soft anti-affinity a fifth replica shares a
node. No grading run drains the shop's nodes or sees another run's pods.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from opslab.grading import isolation
from opslab.grading.fixtures import LearnerError, audited, find_object, hold_pods, lift_hold
from opslab.primitives.readiness import wait_for

ZONE = "topology.kubernetes.io/zone"
TAINT = "opslab.dev/dedicated"
CELL_LABEL = "opslab.dev/grading-cell"
SPOT = client.V1Taint(key="opslab.dev/capacity", value="spot", effect="PreferNoSchedule")
DEDICATED = client.V1Taint(key=TAINT, value="batch", effect="NoSchedule")
LAYOUT = {"a1": ("zone-a", []), "a2": ("zone-a", []), "b1": ("zone-b", [SPOT]), "c1": ("zone-c", [SPOT, DEDICATED])}
CAPACITY = {"cpu": "4", "memory": "16Gi", "pods": "110"}
KINDS = {"Deployment", "PodDisruptionBudget", "PriorityClass"}
NODE_CONDITION_TAINTS = {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"}


def node_names(run_id: str, cell: str) -> dict[str, str]:
    return {slot: f"grade-{run_id}-{cell}-{slot}" for slot in LAYOUT}


def ready(pod: client.V1Pod) -> bool:
    return (
        pod.status.phase == "Running"
        and pod.metadata.deletion_timestamp is None
        and any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
    )


def unschedulable(pod: client.V1Pod) -> bool:
    """The scheduler tried this pod and found no node for it."""
    return any(
        c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable"
        for c in pod.status.conditions or []
    )


class Cell:
    """Nodes, a namespace and the learner's objects of one part of a grading run."""

    def __init__(self, api: client.ApiClient, run_id: str, key: str, manifests: list[dict[str, Any]]) -> None:
        self.api, self.run_id, self.key = api, run_id, key
        self.core, self.apps = client.CoreV1Api(api), client.AppsV1Api(api)
        self.policy, self.scheduling = client.PolicyV1Api(api), client.SchedulingV1Api(api)
        self.nodes = node_names(run_id, key)
        self.namespace = f"grade-{run_id}-{key}"
        self.manifests = manifests
        self.deployment: dict[str, Any] = {}
        self.pdb: str | None = None
        self.classes: list[str] = []

    # ------------------------------------------------------------------ set-up

    def up(self) -> Cell:
        for slot, (zone, taints) in LAYOUT.items():
            self.core.create_node(self._node(slot, zone, taints))
        isolation.create_namespace(self.api, self.run_id, suffix=self.key)
        wait_for(lambda: all(self._node_ready(n) for n in self.nodes.values()), 30)
        self._deploy()
        return self

    def _node(self, slot: str, zone: str, taints: list[client.V1Taint]) -> client.V1Node:
        name = self.nodes[slot]
        labels = {
            **isolation.labels(self.run_id), CELL_LABEL: f"{self.run_id}-{self.key}", ZONE: zone,
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "type": "kwok",
            "topology.kubernetes.io/region": "opslab-local",
        }  # fmt: skip
        run_taint = client.V1Taint(key=isolation.RUN_LABEL, value=self.run_id, effect="NoSchedule")
        return client.V1Node(
            metadata=client.V1ObjectMeta(
                name=name,
                labels=labels,
                annotations={"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            ),
            spec=client.V1NodeSpec(taints=[run_taint, *taints]),
            status=client.V1NodeStatus(allocatable=CAPACITY, capacity=CAPACITY),
        )

    def _node_ready(self, name: str) -> bool:
        """Ready, and open to pods: a new node carries the not-ready taint until the node
        controller sees it Ready (seconds later on a busy machine), and a pod the scheduler tries
        meanwhile is judged Unschedulable."""
        node = self.core.read_node(name)
        ready = any(c.type == "Ready" and c.status == "True" for c in (node.status.conditions or []))
        return ready and not any(t.key in NODE_CONDITION_TAINTS for t in node.spec.taints or [])

    def _deploy(self) -> None:
        """Create the learner's objects in the cell: the pods may only use the cell's nodes."""
        documents = copy.deepcopy(self.manifests)
        renames = {}
        for doc in documents:
            if doc["kind"] == "PriorityClass":
                old = doc["metadata"]["name"]
                renames[old] = doc["metadata"]["name"] = f"{old}-{self.namespace}"
        doc: dict[str, Any] = {}
        try:
            for doc in documents:
                doc.setdefault("metadata", {})
                doc["metadata"].setdefault("labels", {}).update(isolation.labels(self.run_id))
                if doc["kind"] == "PriorityClass":
                    # A learner's globalDefault would change every pod of the cluster; the check
                    # reads it from the manifest, so the copy created here never is the default.
                    doc["globalDefault"] = False
                    self.scheduling.create_priority_class(doc)
                    self.classes.append(doc["metadata"]["name"])
                elif doc["kind"] == "Deployment":
                    spec = doc.setdefault("spec", {}).setdefault("template", {}).setdefault("spec", {})
                    if spec.get("priorityClassName") in renames:
                        spec["priorityClassName"] = renames[spec["priorityClassName"]]
                    spec.setdefault("nodeSelector", {})[CELL_LABEL] = f"{self.run_id}-{self.key}"
                    spec.setdefault("tolerations", []).append(
                        {"key": isolation.RUN_LABEL, "operator": "Equal", "value": self.run_id, "effect": "NoSchedule"}
                    )
                    doc["metadata"]["namespace"] = self.namespace
                    self.apps.create_namespaced_deployment(self.namespace, doc)
                    self.deployment = doc
                elif doc["kind"] == "PodDisruptionBudget":
                    doc["metadata"]["namespace"] = self.namespace
                    self.policy.create_namespaced_pod_disruption_budget(self.namespace, doc)
                    self.pdb = doc["metadata"]["name"]
        except ApiException as exc:
            message = exc.body if isinstance(exc.body, str) else str(exc)
            raise LearnerError(f"the API server refused your {doc.get('kind')}: {message[:300]}") from None
        if not self.deployment:
            raise LearnerError("checkout.yaml has no Deployment named checkout")

    def down(self) -> None:
        """Remove the cell: its pods first (KWOK removes them from its nodes), then the nodes."""
        with contextlib.suppress(ApiException):
            self.core.delete_namespace(self.namespace)
        with contextlib.suppress(ApiException):
            wait_for(lambda: not self.core.list_namespaced_pod(self.namespace).items, 30, interval=0.5)
        for name in self.nodes.values():
            with contextlib.suppress(ApiException):
                self.core.delete_node(name)
        for name in self.classes:
            with contextlib.suppress(ApiException):
                self.scheduling.delete_priority_class(name)

    # ------------------------------------------------------------------ reading

    @property
    def replicas(self) -> int:
        return int(self.deployment.get("spec", {}).get("replicas", 1))

    def pods(self) -> list[client.V1Pod]:
        items = self.core.list_namespaced_pod(self.namespace, label_selector="app=checkout").items
        return [p for p in items if p.metadata.deletion_timestamp is None]

    def running(self) -> list[client.V1Pod]:
        return [p for p in self.pods() if ready(p)]

    def decided(self, count: int) -> list[client.V1Pod] | None:
        """The pods, once there are ``count`` and the scheduler has a verdict on each: Ready on a
        node, or Unschedulable."""
        pods = self.pods()
        if len(pods) < count:
            return None
        if all(ready(p) or unschedulable(p) for p in pods):
            return pods
        return None

    def settle(self, timeout: float = 45) -> list[client.V1Pod]:
        """Wait (bounded) for the scheduler's verdict on every replica; the Ready pods."""
        wait_for(lambda: self.decided(self.replicas), timeout)
        return self.running()

    def zone_of(self, node: str) -> str:
        return next(LAYOUT[slot][0] for slot, name in self.nodes.items() if name == node)

    def slot_of(self, node: str) -> str:
        return next(slot for slot, name in self.nodes.items() if name == node)

    def allowed(self) -> int:
        if not self.pdb:
            raise LearnerError("no PodDisruptionBudget in your manifests")
        status = self.policy.read_namespaced_pod_disruption_budget(self.pdb, self.namespace).status
        return int(status.disruptions_allowed or 0)

    def exhaust_budget(self) -> None:
        """Leave the budget no disruption to allow, whatever the scheduler does: a ResourceQuota
        holds the namespace at one pod fewer than the replicas, then b1's pod is evicted (through
        the API). Its replacement cannot even be created, so two pods run, both Ready, and a drain
        check sees a budget that stays at its limit until ``release_budget``."""
        on_b1 = [p for p in self.running() if p.spec.node_name == self.nodes["b1"]]
        if not on_b1:
            raise LearnerError("no checkout pod runs in zone-b, so the budget cannot be brought to its limit")
        originals = {p.metadata.name for p in self.pods()}
        hold_pods(self.core, self.namespace, self.replicas - 1, isolation.labels(self.run_id))
        # The budget allows this eviction (three Ready pods, two needed) once its controller has
        # counted them; until then the API answers 429.
        if not wait_for(lambda: self._evict(on_b1[0]), 30, interval=0.5):
            raise LearnerError(f"the budget never allowed evicting {on_b1[0].metadata.name} (is it minAvailable: 2?)")

        def limited() -> bool:
            pods = self.pods()
            return (
                all(p.metadata.name in originals for p in pods)
                and len(self.running()) == self.replicas - 1
                and self.allowed() == 0
            )

        if not wait_for(limited, 30, interval=0.5):
            raise LearnerError("could not bring checkout to its budget's limit (is the budget minAvailable: 2 of 3?)")

    def release_budget(self) -> None:
        """Lift the quota ``exhaust_budget`` set, and have the ReplicaSet create the missing pod now
        (it backs off between refused creations; an update to it makes it try again at once)."""
        lift_hold(self.core, self.apps, self.namespace)

    def _evict(self, pod: client.V1Pod) -> bool:
        """Evict ``pod`` through the API; False if its budget refused (429), True once it is gone."""
        eviction = client.V1Eviction(metadata=client.V1ObjectMeta(name=pod.metadata.name, namespace=self.namespace))
        try:
            self.core.create_namespaced_pod_eviction(pod.metadata.name, self.namespace, eviction)
        except ApiException as exc:
            if exc.status == 429:
                return False
            if exc.status != 404:
                raise
        return True


def removed_by(namespace: str, pod: str) -> list[str]:
    """Who removed ``pod`` (an accepted eviction or delete), from the API server's audit log."""
    return sorted({
        r.user for r in audited(namespace=namespace)
        if r.name == pod and r.resource in ("pods", "pods/eviction") and r.verb in ("create", "delete")
        and 200 <= r.code < 300
    })  # fmt: skip


def refused_evictions(namespace: str, user: str) -> int:
    """Evictions of pods in ``namespace`` by ``user`` that the API server refused (429), from its audit log."""
    return sum(1 for r in audited(namespace=namespace, user=user) if r.resource == "pods/eviction" and r.code == 429)


def pdb_of(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    return find_object(manifests, "PodDisruptionBudget")
