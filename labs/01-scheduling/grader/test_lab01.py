"""Lab 1 checks: placement by the real scheduler, disruption budgets, and a safe drain."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException
from support import TAINT, ZONE, Cell, pdb_of, refused_evictions, removed_by, wait_for

from opslab.grading import isolation
from opslab.grading.fixtures import LearnerError, LearnerRun, find_object, learner_file, python, run_learner
from opslab.grading.rubric import check
from opslab.grading.sandbox import Sandbox

# ---------------------------------------------------------------------- manifests


@check(points=2, section="Manifests", timeout=20, hint="checkout.yaml needs a Deployment named checkout, a "
       "PodDisruptionBudget selecting app=checkout and a PriorityClass (see README, task 1).")  # fmt: skip
def test_manifests_declare_the_three_objects(manifests: list[dict[str, Any]]) -> None:
    """checkout.yaml declares the Deployment, its PodDisruptionBudget and a PriorityClass"""
    deployment = find_object(manifests, "Deployment", "checkout")
    pdb = pdb_of(manifests)
    find_object(manifests, "PriorityClass")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = pdb.get("spec", {}).get("selector", {}).get("matchLabels", {})
    assert selector and all(labels.get(k) == v for k, v in selector.items()), (
        f"the PodDisruptionBudget selects {selector}, which does not match checkout's pods ({labels})"
    )


# ---------------------------------------------------------------------- placement


@check(points=2, section="Placement", timeout=90, hint="Keep replicas: 3 and make sure every replica has "
       "somewhere to go: one node each, in three zones (one of them tainted).")  # fmt: skip
def test_three_replicas_run_on_three_nodes(placed: Cell) -> None:
    """three checkout replicas are Running and Ready, each on a node of its own"""
    pods = placed.running()
    nodes = sorted(placed.slot_of(p.spec.node_name) for p in pods)
    assert len(pods) == 3, f"{len(pods)} checkout pods are Running and Ready (on {nodes}); 3 are expected"
    assert len(set(nodes)) == 3, f"checkout's replicas share nodes: they run on {nodes}"


@check(points=3, section="Placement", timeout=90, hint=f"A zone failure must cost at most one replica: spread "
       f"over {ZONE} with a hard constraint. The third zone's only node is tainted.")  # fmt: skip
def test_replicas_spread_over_three_zones(placed: Cell) -> None:
    """the replicas run in three different zones"""
    zones = sorted(placed.zone_of(p.spec.node_name) for p in placed.running())
    assert len(set(zones)) == 3 and len(zones) == 3, (
        f"checkout runs in zones {zones}; one replica in each of zone-a, zone-b and zone-c is expected"
    )


@check(points=2, section="Placement", timeout=20, hint="Use topologySpreadConstraints with topologyKey "
       f"{ZONE}, maxSkew 1 and whenUnsatisfiable: DoNotSchedule (a hard rule, not a preference).")  # fmt: skip
def test_zone_spread_is_required(manifests: list[dict[str, Any]]) -> None:
    """the zone spread is a hard constraint (DoNotSchedule, maxSkew 1) on checkout's pods"""
    template = find_object(manifests, "Deployment", "checkout")["spec"]["template"]
    constraints = [c for c in template["spec"].get("topologySpreadConstraints") or [] if c.get("topologyKey") == ZONE]
    assert constraints, f"no topologySpreadConstraint on {ZONE}"
    constraint = constraints[0]
    assert constraint.get("whenUnsatisfiable") == "DoNotSchedule", (
        f"whenUnsatisfiable is {constraint.get('whenUnsatisfiable')!r}: the scheduler may ignore it"
    )
    assert constraint.get("maxSkew") == 1, f"maxSkew is {constraint.get('maxSkew')}, not 1"
    wanted = (constraint.get("labelSelector") or {}).get("matchLabels") or {}
    labels = template["metadata"].get("labels") or {}
    assert wanted and all(labels.get(k) == v for k, v in wanted.items()), (
        f"the spread constraint counts pods labelled {wanted}, not checkout's pods ({labels})"
    )


@check(points=2, section="Placement", timeout=90, hint=f"The zone-c node carries the taint {TAINT}=batch:NoSchedule. "
       "Tolerate exactly that taint (key, value and effect) in checkout's pod template, not every taint.")  # fmt: skip
def test_a_replica_runs_on_the_tainted_node(placed: Cell, manifests: list[dict[str, Any]]) -> None:
    """one replica runs on the tainted node, which checkout tolerates and nothing more"""
    spec = find_object(manifests, "Deployment", "checkout")["spec"]["template"]["spec"]
    blanket = [t for t in spec.get("tolerations") or [] if not t.get("key")]
    assert not blanket, f"checkout tolerates every taint ({blanket[0]}): it could land on any reserved node"
    on_tainted = [p.metadata.name for p in placed.running() if p.spec.node_name == placed.nodes["c1"]]
    assert on_tainted, "no checkout pod runs on zone-c's tainted node"


@check(points=2, section="Placement", timeout=90, hint="Create a PriorityClass (value >= 1000, not globalDefault) "
       "and set priorityClassName in the pod template.")  # fmt: skip
def test_checkout_runs_with_high_priority(placed: Cell, manifests: list[dict[str, Any]]) -> None:
    """checkout's pods run with a high priority from its own PriorityClass"""
    pods = placed.running()
    assert pods, "no checkout pod is running"
    priority_class = find_object(manifests, "PriorityClass")
    assert not priority_class.get("globalDefault"), "the PriorityClass must not be the cluster's global default"
    priorities = sorted({p.spec.priority or 0 for p in pods})
    assert min(priorities) >= 1000, f"checkout's pods run with priority {priorities}; give them >= 1000"


@check(points=3, section="Placement", timeout=90, hint="Add a required podAntiAffinity on kubernetes.io/hostname "
       "for app=checkout: two checkout pods may never share a node, even when scaled up.")  # fmt: skip
def test_no_two_replicas_share_a_node_when_scaled_up(placed: Cell) -> None:
    """scaled to one replica more than there are nodes, no two replicas share a node"""
    assert len(placed.running()) == 3, "needs three Running replicas before scaling up"
    count = len(placed.nodes) + 1
    placed.apps.patch_namespaced_deployment_scale("checkout", placed.namespace, {"spec": {"replicas": count}})
    try:
        pods = wait_for(lambda: placed.decided(count), 60)
        assert pods, f"the scheduler gave no verdict on {count} checkout replicas within 60 s"
        per_node: dict[str, int] = {}
        for pod in pods:
            if pod.spec.node_name:
                slot = placed.slot_of(pod.spec.node_name)
                per_node[slot] = per_node.get(slot, 0) + 1
        crowded = {n: c for n, c in per_node.items() if c > 1}
        assert not crowded, f"with {count} replicas on {len(placed.nodes)} nodes, checkout pods share nodes: {crowded}"
    finally:
        placed.apps.patch_namespaced_deployment_scale("checkout", placed.namespace, {"spec": {"replicas": 3}})


# ---------------------------------------------------------------------- disruption


@check(points=2, section="Disruption", timeout=90, hint="With 3 replicas, minAvailable: 2 (or maxUnavailable: 1) "
       "allows exactly one voluntary disruption at a time; minAvailable: 3 blocks every drain.")  # fmt: skip
def test_the_budget_allows_one_disruption(placed: Cell) -> None:
    """the PodDisruptionBudget sees three healthy pods and allows exactly one disruption"""
    if not placed.pdb:
        raise AssertionError("no PodDisruptionBudget in your manifests")
    status: dict[str, Any] = {}

    def observed() -> bool:
        pdb = placed.policy.read_namespaced_pod_disruption_budget(placed.pdb, placed.namespace).status
        status.update(healthy=pdb.current_healthy, allowed=pdb.disruptions_allowed)
        return pdb.current_healthy == 3 and pdb.observed_generation is not None

    wait_for(observed, 20)
    assert status.get("healthy") == 3, f"the budget sees {status.get('healthy')} healthy pods, not 3"
    assert status.get("allowed") == 1, f"the budget allows {status.get('allowed')} disruptions; it should allow 1"


# ---------------------------------------------------------------------- drain tool


def drain(
    lab_path: Path, sandbox: Sandbox, kubeconfig: Path, node: str, timeout: float, limit: float
) -> tuple[LearnerRun, dict[str, Any] | None]:
    """Run the learner's drain.py in the sandbox, as the run's ServiceAccount."""
    script = learner_file(lab_path, "drain.py")
    result = run_learner(
        [python(), str(script), node, "--timeout", str(timeout)], cwd=lab_path, timeout=limit, what="drain.py",
        sandbox=sandbox, env={"KUBECONFIG": str(kubeconfig)},
    )  # fmt: skip
    try:
        report = json.loads(result.stdout)
    except ValueError:
        report = None
    return result, report if isinstance(report, dict) else None


class ReadySampler:
    """Counts checkout's Ready pods four times a second while a drain runs."""

    def __init__(self, cell: Cell) -> None:
        self.cell, self.seen, self.stop = cell, [], threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            self.seen.append(len(self.cell.running()))
            self.stop.wait(0.25)

    def __enter__(self) -> ReadySampler:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()

    @property
    def lowest(self) -> int:
        return min(self.seen, default=0)


@check(points=1, section="Drain tool", timeout=30, hint="Check the node exists first; print one line on stderr "
       "(error: node X not found) and exit 2, without a traceback.")  # fmt: skip
def test_drain_refuses_an_unknown_node_clearly(lab_path: Path, sandbox: Sandbox, learner_kubeconfig: Path) -> None:
    """drain.py refuses an unknown node with a one-line error"""
    result, _ = drain(lab_path, sandbox, learner_kubeconfig, "no-such-node", 5, 25)
    assert result.returncode != 0, "drain.py exited 0 for a node that does not exist"
    assert "Traceback" not in result.stderr, f"drain.py crashed: {result.tail()}"
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "no-such-node" in lines[0], f"expected one line naming the node, got: {result.tail()}"
    assert result.returncode == 2, f"drain.py exited {result.returncode} on bad input; the docstring says 2"


@check(points=4, section="Drain tool", timeout=120, hint="Cordon first (spec.unschedulable), then evict each pod "
       "with the Eviction API (pods/eviction), never delete it: the API then enforces the budget.")  # fmt: skip
def test_drain_cordons_and_evicts_within_the_budget(
    lab_path: Path, sandbox: Sandbox, learner_kubeconfig: Path, fresh_cell: Callable[[str], Cell]
) -> None:
    """draining a node cordons it, evicts its pod, and checkout never drops below its budget"""
    cell = fresh_cell("d1")
    victim = next((p for p in cell.running() if cell.zone_of(p.spec.node_name) == "zone-a"), None)
    assert victim is not None, "no checkout pod runs in zone-a to drain"
    node = victim.spec.node_name
    with ReadySampler(cell) as sampler:
        result, report = drain(lab_path, sandbox, learner_kubeconfig, node, 30, 60)
        moved = wait_for(lambda: len(cell.running()) == 3 and victim.metadata.name not in
                         {p.metadata.name for p in cell.running()}, 20)  # fmt: skip
    assert cell.core.read_node(node).spec.unschedulable, "the node was not cordoned"
    assert report is not None, f"drain.py did not print a JSON report: {result.tail()}"
    assert f"{cell.namespace}/{victim.metadata.name}" in report.get("evicted", []), (
        f"the report does not list {victim.metadata.name} as evicted: {report.get('evicted')}"
    )
    assert result.returncode == 0, f"drain.py exited {result.returncode}: {result.tail()}"
    assert moved, f"{victim.metadata.name} was not replaced by a Ready pod on another node within 20 s"
    assert sampler.lowest >= 2, f"checkout dropped to {sampler.lowest} ready pods during the drain"


@check(points=4, section="Drain tool", timeout=120, hint="When an eviction answers 429 (the budget says no), retry "
       "until --timeout, then report the pod under refused, exit 1, and leave it running.")  # fmt: skip
def test_drain_reports_a_refused_eviction_and_gives_up_at_its_timeout(
    lab_path: Path, sandbox: Sandbox, learner_kubeconfig: Path, fresh_cell: Callable[[str], Cell]
) -> None:
    """a drain the budget refuses retries until --timeout, then reports it and leaves checkout alone"""
    cell = fresh_cell("d2")
    cell.exhaust_budget()
    victim = next(p for p in cell.running() if p.spec.node_name == cell.nodes["c1"])
    began = time.monotonic()
    with ReadySampler(cell) as sampler:
        result, report = drain(lab_path, sandbox, learner_kubeconfig, victim.spec.node_name, 8, 45)
    elapsed = time.monotonic() - began
    if victim.metadata.name not in {p.metadata.name for p in cell.pods()}:
        by = removed_by(cell.namespace, victim.metadata.name)
        if isolation.token_subject(learner_kubeconfig) in by:
            raise AssertionError(
                f"{victim.metadata.name} was removed (by {', '.join(by)}) although its budget allowed no disruption"
            )
        raise RuntimeError(f"the grading cell lost {victim.metadata.name} (removed by {by or 'no audited request'}), "
                           "not through drain.py: grade again")  # fmt: skip
    assert sampler.lowest >= 2, f"checkout dropped to {sampler.lowest} ready pods"
    assert result.returncode == 1, f"drain.py exited {result.returncode}, not 1, although an eviction was refused"
    assert report is not None, f"drain.py did not print a JSON report: {result.tail()}"
    refused = json.dumps(report.get("refused", []))
    assert victim.metadata.name in refused, f"the report does not list {victim.metadata.name} as refused: {refused}"
    assert elapsed >= 7, f"drain.py gave up after {elapsed:.1f} s with --timeout 8: it must retry until the timeout"
    assert elapsed < 30, f"drain.py took {elapsed:.0f} s with --timeout 8"


@check(points=4, section="Drain tool", timeout=120, hint="A 429 only means 'not now': keep retrying (with a short "
       "pause) until the budget allows the eviction or --timeout passes.")  # fmt: skip
def test_drain_succeeds_once_the_budget_frees_up(
    lab_path: Path, sandbox: Sandbox, learner_kubeconfig: Path, fresh_cell: Callable[[str], Cell],
    kube_api: client.ApiClient,
) -> None:  # fmt: skip
    """a drain refused at first goes through when the budget frees up before its timeout"""
    cell = fresh_cell("d3")
    cell.exhaust_budget()
    victim = next(p for p in cell.running() if p.spec.node_name == cell.nodes["c1"])
    learner = isolation.token_subject(learner_kubeconfig)
    outcome: dict[str, Any] = {}

    def run() -> None:
        outcome["result"], outcome["report"] = drain(
            lab_path, sandbox, learner_kubeconfig, victim.spec.node_name, 40, 60
        )

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    # Free the budget only once this drain has been refused: the API server's audit log names
    # who asked to evict which pod and what it answered, so other runs' refusals do not count.
    refused = wait_for(lambda: refused_evictions(cell.namespace, learner) > 0 or not worker.is_alive(), 30,
                       interval=0.5)  # fmt: skip
    freed_while_running = worker.is_alive()
    cell.release_budget()
    worker.join(70)
    if "result" not in outcome:
        raise LearnerError("drain.py did not finish")
    result, report = outcome["result"], outcome["report"]
    assert refused_evictions(cell.namespace, learner) > 0, (
        "drain.py never tried to evict the pod through the Eviction API (no refused eviction within 30 s)"
    )
    assert freed_while_running and refused, (
        f"drain.py gave up at the first refusal (exit {result.returncode}) instead of retrying"
    )
    assert result.returncode == 0, f"drain.py exited {result.returncode} although the budget freed up: {result.tail()}"
    assert report is not None and f"{cell.namespace}/{victim.metadata.name}" in report.get("evicted", []), (
        f"the report does not list {victim.metadata.name} as evicted: {report and report.get('evicted')}"
    )
    try:
        pod = cell.core.read_namespaced_pod(victim.metadata.name, cell.namespace)
        assert pod.metadata.deletion_timestamp is not None, f"{victim.metadata.name} is still running"
    except ApiException as exc:
        assert exc.status == 404
