"""The real scheduler, controller-manager and eviction API, on KWOK nodes."""

from __future__ import annotations

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from opslab.grading.fixtures import eventually
from opslab.primitives.readiness import ProbeResult, wait_until
from opslab.runtime.lifecycle import Platform
from opslab.runtime.nodes import TAINT_KEY
from opslab.shop.faults import FAULT_LABEL, carrier

pytestmark = pytest.mark.platform


def deployment(name: str, replicas: int, **pod_spec: object) -> client.V1Deployment:
    labels = {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    containers=[client.V1Container(name="app", image=f"opslab/{name}:1")], **pod_spec
                ),
            ),
        ),
    )


def running_pods(core: client.CoreV1Api, namespace: str, app: str) -> list[client.V1Pod]:
    pods = core.list_namespaced_pod(namespace, label_selector=f"app={app}").items
    return [p for p in pods if p.status.phase == "Running" and p.metadata.deletion_timestamp is None]


def wait_running(core: client.CoreV1Api, namespace: str, app: str, count: int, timeout: float = 60) -> list:
    def probe() -> ProbeResult:
        pods = running_pods(core, namespace, app)
        return ProbeResult(len(pods) == count, f"{len(pods)}/{count} Running")

    wait_until(probe, what=f"{count} Running pods of {app}", timeout=timeout)
    return running_pods(core, namespace, app)


def test_a_deployment_gets_running_pods_on_kwok_nodes(api: client.ApiClient, namespace: str) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    apps.create_namespaced_deployment(namespace, deployment("web", 3))
    pods = wait_running(core, namespace, "web", 3)
    assert all(p.spec.node_name.startswith("kwok-node-") for p in pods)
    assert all(p.status.pod_ip for p in pods), "KWOK gives each pod an IP"
    wait_until(
        lambda: ProbeResult(
            apps.read_namespaced_deployment(namespace=namespace, name="web").status.ready_replicas == 3
        ),
        what="deployment web ready",
        timeout=30,
    )


def test_anti_affinity_and_zone_spread_are_honoured(api: client.ApiClient, namespace: str) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    labels = client.V1LabelSelector(match_labels={"app": "spread"})
    spec = {
        "affinity": client.V1Affinity(
            pod_anti_affinity=client.V1PodAntiAffinity(
                required_during_scheduling_ignored_during_execution=[
                    client.V1PodAffinityTerm(label_selector=labels, topology_key="kubernetes.io/hostname")
                ]
            )
        ),
        "topology_spread_constraints": [
            client.V1TopologySpreadConstraint(
                max_skew=1,
                topology_key="topology.kubernetes.io/zone",
                when_unsatisfiable="DoNotSchedule",
                label_selector=labels,
            )
        ],
        "tolerations": [client.V1Toleration(key=TAINT_KEY, operator="Exists", effect="NoSchedule")],
    }
    apps.create_namespaced_deployment(namespace, deployment("spread", 4, **spec))
    pods = wait_running(core, namespace, "spread", 3)
    assert len({p.spec.node_name for p in pods}) == 3, "one pod per node"

    def refused() -> list[client.V1Pod] | None:
        """The Pending pods once the scheduler has reported why each cannot be placed."""
        pods = core.list_namespaced_pod(namespace, label_selector="app=spread").items
        pending = [p for p in pods if p.status.phase == "Pending"]
        for pod in pending:
            events = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={pod.metadata.name}")
            if not any(e.reason == "FailedScheduling" for e in events.items):
                return None
        return pending or None

    pending = eventually(refused, 30)
    assert pending and len(pending) == 1, "the 4th replica has nowhere to go: anti-affinity keeps it Pending"


def test_taint_keeps_intolerant_pods_off_the_tainted_node(api: client.ApiClient, namespace: str) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    apps.create_namespaced_deployment(namespace, deployment("plain", 6))
    pods = wait_running(core, namespace, "plain", 6)
    tainted = {
        n.metadata.name for n in core.list_node().items if any(t.key == TAINT_KEY for t in (n.spec.taints or []))
    }
    assert tainted, "the platform has a tainted node"
    assert not {p.spec.node_name for p in pods} & tainted


def test_eviction_blocked_by_a_pdb_is_refused_with_429(api: client.ApiClient, namespace: str) -> None:
    apps, core, policy = client.AppsV1Api(api), client.CoreV1Api(api), client.PolicyV1Api(api)
    apps.create_namespaced_deployment(namespace, deployment("guarded", 2))
    pdb = client.V1PodDisruptionBudget(
        metadata=client.V1ObjectMeta(name="guarded"),
        spec=client.V1PodDisruptionBudgetSpec(
            min_available=2, selector=client.V1LabelSelector(match_labels={"app": "guarded"})
        ),
    )
    policy.create_namespaced_pod_disruption_budget(namespace, pdb)
    pods = wait_running(core, namespace, "guarded", 2)
    wait_until(
        lambda: ProbeResult(
            (policy.read_namespaced_pod_disruption_budget("guarded", namespace).status.current_healthy or 0) == 2
        ),
        what="PDB status",
        timeout=30,
    )
    eviction = client.V1Eviction(metadata=client.V1ObjectMeta(name=pods[0].metadata.name, namespace=namespace))
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod_eviction(pods[0].metadata.name, namespace, eviction)
    assert refused.value.status == 429
    assert "disruption budget" in refused.value.body


def test_deleting_an_owner_garbage_collects_its_dependents(api: client.ApiClient, namespace: str) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    apps.create_namespaced_deployment(namespace, deployment("owned", 2))
    wait_running(core, namespace, "owned", 2)
    assert apps.list_namespaced_replica_set(namespace, label_selector="app=owned").items
    apps.delete_namespaced_deployment("owned", namespace, propagation_policy="Background")

    def gone() -> ProbeResult:
        rs = apps.list_namespaced_replica_set(namespace, label_selector="app=owned").items
        pods = core.list_namespaced_pod(namespace, label_selector="app=owned").items
        return ProbeResult(not rs and not pods, f"{len(rs)} replicasets, {len(pods)} pods left")

    wait_until(gone, what="garbage collection", timeout=60)


def test_a_not_ready_node_has_its_pods_evicted_and_replaced(
    platform: Platform, api: client.ApiClient, namespace: str
) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    apps.create_namespaced_deployment(namespace, deployment("movable", 4))
    pods = wait_running(core, namespace, "movable", 4)
    victim = next(p.spec.node_name for p in pods if p.spec.node_name != "kwok-node-2")
    core.patch_node(victim, {"metadata": {"labels": {FAULT_LABEL: carrier("node-not-ready")}}})
    try:

        def moved() -> ProbeResult:
            running = running_pods(core, namespace, "movable")
            on_victim = [p for p in running if p.spec.node_name == victim]
            return ProbeResult(
                len(running) == 4 and not on_victim, f"{len(running)} running, {len(on_victim)} on {victim}"
            )

        eviction = platform.settings.cluster.eviction_seconds
        wait_until(moved, what=f"pods to leave {victim}", timeout=eviction + 90)
        node = core.read_node(victim)
        assert any(t.key == "node.kubernetes.io/not-ready" for t in node.spec.taints or [])
    finally:
        core.patch_node(victim, {"metadata": {"labels": {FAULT_LABEL: None}}})

    def healed() -> ProbeResult:
        node = core.read_node(victim)
        ready = any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)
        tainted = any(t.key.startswith("node.kubernetes.io/") for t in node.spec.taints or [])
        return ProbeResult(ready and not tainted, f"ready={ready} tainted={tainted}")

    wait_until(healed, what=f"{victim} to recover", timeout=60)
