"""Lab 1 checks: placement by the real scheduler, disruption budgets, and a safe drain."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException
from support import running, unschedulable, wait_for

from opslab.grading.fixtures import LearnerError, find_object, learner_file, python, run_learner
from opslab.grading.rubric import check

ZONE = "topology.kubernetes.io/zone"
TAINT = "opslab.dev/dedicated"


# ---------------------------------------------------------------------- manifests


@check(points=2, section="Manifests", hint="checkout.yaml needs a Deployment named checkout, a PodDisruptionBudget "
       "selecting app=checkout and a PriorityClass (see README, task 1).")  # fmt: skip
def test_manifests_declare_the_three_objects(manifests: list[dict[str, Any]]) -> None:
    """checkout.yaml declares the Deployment, its PodDisruptionBudget and a PriorityClass"""
    deployment = find_object(manifests, "Deployment", "checkout")
    pdb = find_object(manifests, "PodDisruptionBudget")
    find_object(manifests, "PriorityClass")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = pdb.get("spec", {}).get("selector", {}).get("matchLabels", {})
    assert selector and all(labels.get(k) == v for k, v in selector.items()), (
        f"the PodDisruptionBudget selects {selector}, which does not match checkout's pods ({labels})"
    )


# ---------------------------------------------------------------------- placement


@check(points=2, section="Placement", hint="Keep replicas: 3 and make sure every replica has somewhere to go.")
def test_three_replicas_run(settled: list[client.V1Pod]) -> None:
    """three checkout replicas are Running and Ready"""
    assert len(settled) == 3, f"{len(settled)} checkout pods are Running and Ready, 3 are expected"


@check(points=3, section="Placement", hint="A zone failure must cost at most one replica: spread over "
       f"{ZONE}. The third zone's only node is tainted.")  # fmt: skip
def test_replicas_spread_over_three_zones(settled: list[client.V1Pod], nodes: dict[str, client.V1Node]) -> None:
    """the replicas run in three different zones"""
    zones = sorted(nodes[p.spec.node_name].metadata.labels.get(ZONE, "?") for p in settled)
    assert len(set(zones)) == 3, f"checkout runs in zones {zones}; it must run in zone-a, zone-b and zone-c"


@check(points=2, section="Placement", hint="Use topologySpreadConstraints with topologyKey "
       f"{ZONE}, maxSkew 1 and whenUnsatisfiable: DoNotSchedule (a hard rule, not a preference).")  # fmt: skip
def test_zone_spread_is_required(manifests: list[dict[str, Any]]) -> None:
    """the zone spread is a hard constraint (DoNotSchedule, maxSkew 1)"""
    spec = find_object(manifests, "Deployment", "checkout")["spec"]["template"]["spec"]
    constraints = [c for c in spec.get("topologySpreadConstraints") or [] if c.get("topologyKey") == ZONE]
    assert constraints, f"no topologySpreadConstraint on {ZONE}"
    assert constraints[0].get("whenUnsatisfiable") == "DoNotSchedule", (
        f"whenUnsatisfiable is {constraints[0].get('whenUnsatisfiable')!r}: the scheduler may ignore it"
    )
    assert constraints[0].get("maxSkew") == 1, f"maxSkew is {constraints[0].get('maxSkew')}, not 1"


@check(points=3, section="Placement", hint="Add a required podAntiAffinity on kubernetes.io/hostname for "
       "app=checkout: two checkout pods may never share a node, even when scaled up.")  # fmt: skip
def test_a_fourth_replica_cannot_share_a_node(
    kube_api: client.ApiClient, lab_namespace: str, settled: list[client.V1Pod]
) -> None:
    """scaled to four, no two replicas share a node (required anti-affinity)"""
    assert len(settled) == 3, f"needs three Running replicas before scaling up; {len(settled)} run"
    apps, core = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api)
    apps.patch_namespaced_deployment_scale("checkout", lab_namespace, {"spec": {"replicas": 4}})
    try:
        # Wait for the scheduler's verdict on every replica: bound to a node, or marked Unschedulable.
        def decided() -> list[client.V1Pod] | None:
            pods = [
                p
                for p in core.list_namespaced_pod(lab_namespace, label_selector="app=checkout").items
                if p.metadata.deletion_timestamp is None
            ]
            verdicts = [p.spec.node_name or unschedulable(p) for p in pods]
            return pods if len(pods) >= 4 and all(verdicts) else None

        assert wait_for(decided, 60), "the scheduler gave no verdict on the fourth checkout replica within 60 s"
        pods = [p for p in decided() or [] if p.spec.node_name]
        per_node: dict[str, int] = {}
        for pod in pods:
            per_node[pod.spec.node_name] = per_node.get(pod.spec.node_name, 0) + 1
        crowded = {n: c for n, c in per_node.items() if c > 1}
        assert not crowded, f"with 4 replicas, checkout pods share nodes: {crowded}"
    finally:
        apps.patch_namespaced_deployment_scale("checkout", lab_namespace, {"spec": {"replicas": 3}})
        wait_for(lambda: len(core.list_namespaced_pod(lab_namespace, label_selector="app=checkout").items) <= 3, 30)


@check(points=2, section="Placement", hint=f"The zone-c node carries the taint {TAINT}=batch:NoSchedule. "
       "Tolerate exactly that taint in checkout's pod template.")  # fmt: skip
def test_a_replica_runs_on_the_tainted_node(settled: list[client.V1Pod], nodes: dict[str, client.V1Node]) -> None:
    """one replica runs on the tainted node, thanks to a toleration"""
    tainted = {name for name, n in nodes.items() if any(t.key == TAINT for t in n.spec.taints or [])}
    assert tainted, "the platform has no tainted node (is it the default 3-node platform?)"
    on_tainted = [p.metadata.name for p in settled if p.spec.node_name in tainted]
    assert on_tainted, f"no checkout pod runs on the tainted node {sorted(tainted)}"


@check(points=2, section="Placement", hint="Create a PriorityClass (value >= 1000, not globalDefault) and set "
       "priorityClassName in the pod template.")  # fmt: skip
def test_checkout_runs_with_high_priority(settled: list[client.V1Pod], manifests: list[dict[str, Any]]) -> None:
    """checkout's pods run with a high priority from its own PriorityClass"""
    assert settled, "no checkout pod is running"
    priority_class = find_object(manifests, "PriorityClass")
    assert not priority_class.get("globalDefault"), "the PriorityClass must not be the cluster's global default"
    priorities = {p.spec.priority or 0 for p in settled}
    assert min(priorities) >= 1000, f"checkout's pods run with priority {sorted(priorities)}; give them >= 1000"


# ---------------------------------------------------------------------- disruption


@check(points=2, section="Disruption", hint="With 3 replicas, minAvailable: 2 (or maxUnavailable: 1) allows exactly "
       "one voluntary disruption at a time; minAvailable: 3 blocks every drain.")  # fmt: skip
def test_the_budget_allows_one_disruption(
    kube_api: client.ApiClient, lab_namespace: str, deployed: dict[str, Any], settled: list[client.V1Pod]
) -> None:
    """the PodDisruptionBudget allows exactly one disruption when all replicas are healthy"""
    policy = client.PolicyV1Api(kube_api)
    assert "PodDisruptionBudget" in deployed, "no PodDisruptionBudget in your manifests"
    name = deployed["PodDisruptionBudget"]["metadata"]["name"]
    status: dict[str, Any] = {}

    def observed() -> bool:
        pdb = policy.read_namespaced_pod_disruption_budget(name, lab_namespace).status
        status.update(healthy=pdb.current_healthy, allowed=pdb.disruptions_allowed)
        return pdb.current_healthy == 3

    wait_for(observed, 20)
    assert status.get("healthy") == 3, f"the budget sees {status.get('healthy')} healthy pods, not 3"
    assert status.get("allowed") == 1, f"the budget allows {status.get('allowed')} disruptions; it should allow 1"


# ---------------------------------------------------------------------- drain tool


def drain(lab_path: Path, node: str, timeout: float, limit: float) -> tuple[Any, dict[str, Any] | None]:
    script = learner_file(lab_path, "drain.py")
    result = run_learner(
        [python(), str(script), node, "--timeout", str(timeout)], cwd=lab_path, timeout=limit, what="drain.py"
    )
    try:
        report = json.loads(result.stdout)
    except ValueError:
        report = None
    return result, report


@check(points=1, section="Drain tool", hint="Check the node exists first; print one line on stderr "
       "(error: node X not found) and exit non-zero, without a traceback.")  # fmt: skip
def test_drain_refuses_an_unknown_node_clearly(lab_path: Path, kube_api: client.ApiClient) -> None:
    """drain.py refuses an unknown node with a one-line error"""
    result, _ = drain(lab_path, "no-such-node", 5, 30)
    assert result.returncode != 0, "drain.py exited 0 for a node that does not exist"
    assert "Traceback" not in result.stderr, f"drain.py crashed: {result.tail()}"
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "no-such-node" in lines[0], f"expected one line naming the node, got: {result.tail()}"


def sample_ready(core: client.CoreV1Api, namespace: str, stop: threading.Event, seen: list[int]) -> None:
    while not stop.is_set():
        seen.append(len(running(core, namespace)))
        stop.wait(0.25)


@check(points=4, section="Drain tool", timeout=120, hint="Cordon first (spec.unschedulable), then evict each pod "
       "with the Eviction API (pods/eviction), never delete it: the API then enforces the budget.")  # fmt: skip
def test_drain_cordons_and_evicts_within_the_budget(
    lab_path: Path,
    kube_api: client.ApiClient,
    lab_namespace: str,
    settled: list[client.V1Pod],
    nodes: dict[str, client.V1Node],
    uncordon_all: None,
) -> None:
    """draining a zone's node cordons it, evicts its pods, and checkout never drops below its budget"""
    core = client.CoreV1Api(kube_api)
    victim = next(
        (p for p in settled if not any(t.key == TAINT for t in nodes[p.spec.node_name].spec.taints or [])), None
    )
    assert victim is not None, "no checkout pod runs on an untainted node to drain"
    seen: list[int] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_ready, args=(core, lab_namespace, stop, seen), daemon=True)
    sampler.start()
    try:
        result, report = drain(lab_path, victim.spec.node_name, 30, 60)
    finally:
        stop.set()
        sampler.join()
    assert core.read_node(victim.spec.node_name).spec.unschedulable, "the node was not cordoned"
    assert report is not None, f"drain.py did not print a JSON report: {result.tail()}"
    assert f"{lab_namespace}/{victim.metadata.name}" in report.get("evicted", []), (
        f"the report does not list {victim.metadata.name} as evicted: {report.get('evicted')}"
    )
    assert result.returncode == 0, f"drain.py exited {result.returncode}: {result.tail()}"
    gone = wait_for(lambda: victim.metadata.name not in {p.metadata.name for p in running(core, lab_namespace)}, 20)
    assert gone, f"{victim.metadata.name} is still running on the drained node"
    assert min(seen, default=0) >= 2, f"checkout dropped to {min(seen, default=0)} ready pods during the drain"


@check(points=4, section="Drain tool", timeout=120, hint="When an eviction answers 429 (the budget says no), retry "
       "until --timeout, then report the pod under refused, exit non-zero, and leave it running.")  # fmt: skip
def test_drain_reports_a_refused_eviction_and_gives_up(
    lab_path: Path,
    kube_api: client.ApiClient,
    lab_namespace: str,
    nodes: dict[str, client.V1Node],
    budget_exhausted: None,
) -> None:
    """a drain the budget refuses is reported, times out, and leaves checkout within its budget"""
    core = client.CoreV1Api(kube_api)
    candidates = [
        p for p in running(core, lab_namespace)
        if not core.read_node(p.spec.node_name).spec.unschedulable
        and not any(t.key == TAINT for t in nodes[p.spec.node_name].spec.taints or [])
    ]  # fmt: skip
    if not candidates:
        raise LearnerError("no checkout pod runs on a second untainted node (the previous drain check must pass first)")
    victim = candidates[0]
    seen: list[int] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_ready, args=(core, lab_namespace, stop, seen), daemon=True)
    sampler.start()
    began = time.monotonic()
    try:
        result, report = drain(lab_path, victim.spec.node_name, 8, 45)
    finally:
        stop.set()
        sampler.join()
    elapsed = time.monotonic() - began
    assert victim.metadata.name in {p.metadata.name for p in running(core, lab_namespace)}, (
        f"{victim.metadata.name} was removed although its budget allowed no disruption"
    )
    assert min(seen, default=0) >= 2, f"checkout dropped to {min(seen, default=0)} ready pods"
    assert result.returncode != 0, "drain.py exited 0 although an eviction was refused"
    assert report is not None, f"drain.py did not print a JSON report: {result.tail()}"
    refused = json.dumps(report.get("refused", []))
    assert victim.metadata.name in refused, f"the report does not list {victim.metadata.name} as refused: {refused}"
    assert elapsed < 30, f"drain.py took {elapsed:.0f} s with --timeout 8"
    try:
        core.read_namespaced_pod(victim.metadata.name, lab_namespace)
    except ApiException as exc:
        raise AssertionError(f"{victim.metadata.name} no longer exists") from exc
