"""The oracle's runbook on hand-made observations (a stand-in for the toolbox's read tools; the real
toolbox and the real platform are in tests/integration/test_incidents.py)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from opslab.agent import oracle as oracle_module
from opslab.agent.oracle import Oracle

OLD = "2026-01-01T00:00:00Z"


def _stamp(seconds_ago: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - seconds_ago))


class Observed:
    """What the read tools return, and the actions taken."""

    def __init__(self) -> None:
        self.deployments_ = {
            name: {"name": name, "replicas": 2, "intended": 2, "ready": 2, "updated": 2, "unavailable": 0}
            for name in ("gateway", "catalog", "cart", "checkout", "payments")
        }
        self.history: dict[str, list[dict[str, Any]]] = {
            name: [{"revision": 1, "hash": f"{name}-1", "image": f"opslab/shop-{name}:1.0.0", "cpu_limit": "500m",
                    "created": OLD}]
            for name in self.deployments_
        }  # fmt: skip
        self.pod_rows: list[dict[str, Any]] = []
        self.nodes_ = [{"name": "n1", "ready": True, "reason": "", "cordoned": False, "taints": []}]
        self.sli: dict[str, dict[str, float]] = {"error_ratio": {}, "slow_ratio": {}}
        self.memory: dict[str, float] = {}
        self.actions: list[tuple[str, ...]] = []

    def release(self, service: str, *, image: str = "", cpu: str = "", seconds_ago: float = 120) -> None:
        last = dict(self.history[service][-1])
        last.update(
            revision=last["revision"] + 1, hash=f"{service}-{last['revision'] + 1}", created=_stamp(seconds_ago)
        )
        if image:
            last["image"] = image
        if cpu:
            last["cpu_limit"] = cpu
        self.history[service].append(last)

    # the read tools the oracle uses
    def deployments(self) -> list[dict[str, Any]]:
        return list(self.deployments_.values())

    def rollout_history(self, service: str) -> list[dict[str, Any]]:
        return self.history[service]

    def pods(self, service: str = "") -> list[dict[str, Any]]:
        return [p for p in self.pod_rows if not service or p["service"] == service]

    def nodes(self) -> list[dict[str, Any]]:
        return self.nodes_

    def query(self, promql: str) -> list[dict[str, Any]]:
        if promql == "shop_container_memory_working_set_bytes":
            return [{"metric": {"pod": pod}, "value": value} for pod, value in self.memory.items()]
        name = promql.removeprefix("shop:sli_").removesuffix(":rate25s")
        return [{"metric": {"service": s}, "value": v} for s, v in self.sli[name].items()]

    # the actions
    def rollout_undo(self, service: str, to_revision: int = 0) -> dict[str, Any]:
        self.actions.append(("rollout_undo", service))
        return {}

    def scale(self, service: str, replicas: int) -> dict[str, Any]:
        self.actions.append(("scale", service, str(replicas)))
        return {}

    def drain(self, node: str) -> dict[str, Any]:
        self.actions.append(("drain", node))
        return {}


@pytest.fixture
def shop() -> Observed:
    return Observed()


def kinds(oracle: Oracle) -> list[tuple[str, str]]:
    return sorted((f.service, f.fault_type) for f in oracle.findings())


def test_a_healthy_shop_has_no_findings_even_after_old_releases(shop: Observed) -> None:
    shop.release("payments", image="opslab/shop-payments:1.0.1", seconds_ago=600)
    shop.sli["slow_ratio"] = {"payments": 0.01, "gateway": 0.0}
    assert kinds(Oracle(shop)) == []  # type: ignore[arg-type]


def test_lost_replicas_are_capacity_loss_and_scaled_back_to_the_intended_size(shop: Observed) -> None:
    shop.deployments_["catalog"].update(replicas=0, ready=0, updated=0, intended=3)
    oracle = Oracle(shop)  # type: ignore[arg-type]
    (finding,) = oracle.findings()
    assert (finding.service, finding.fault_type) == ("catalog", "capacity-loss")
    finding.action()
    assert shop.actions == [("scale", "catalog", "3")]


def test_the_deepest_slow_service_with_a_new_image_is_blamed(shop: Observed, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oracle_module, "PERSISTENT", 0.0)
    shop.release("payments", image="opslab/shop-payments:1.0.1")
    shop.sli["slow_ratio"] = {"payments": 0.9, "checkout": 0.9, "gateway": 0.8, "catalog": 0.0}
    assert kinds(Oracle(shop)) == [("payments", "latency")]  # type: ignore[arg-type]


def test_a_new_cpu_limit_behind_slowness_is_cpu_throttling(shop: Observed, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oracle_module, "PERSISTENT", 0.0)
    shop.release("payments", cpu="100m")
    shop.sli["slow_ratio"] = {"payments": 0.6, "checkout": 0.5, "gateway": 0.4}
    assert kinds(Oracle(shop)) == [("payments", "cpu-throttling")]  # type: ignore[arg-type]


def test_errors_without_a_release_to_undo_are_left_alone(shop: Observed, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oracle_module, "PERSISTENT", 0.0)
    shop.sli["error_ratio"] = {"gateway": 0.5}
    assert kinds(Oracle(shop)) == []  # type: ignore[arg-type]


def test_a_blip_is_not_acted_on_until_it_lasts(shop: Observed) -> None:
    shop.release("gateway", image="opslab/shop-gateway:1.1.0")
    shop.sli["error_ratio"] = {"gateway": 0.5}
    oracle = Oracle(shop)  # type: ignore[arg-type]
    assert kinds(oracle) == []
    shop.sli["error_ratio"] = {"gateway": 0.0}
    assert kinds(oracle) == []
    oracle.bad_since.clear()
    shop.sli["error_ratio"] = {"gateway": 0.5}
    oracle.findings()
    oracle.bad_since[("gateway", "errors")] -= oracle_module.PERSISTENT
    assert kinds(oracle) == [("gateway", "bad-rollout")]


def test_a_rollout_still_settling_is_not_blamed(shop: Observed, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oracle_module, "PERSISTENT", 0.0)
    shop.release("gateway", image="opslab/shop-gateway:1.0.0", seconds_ago=5)  # e.g. a rollback under way
    shop.sli["error_ratio"] = {"gateway": 0.5}
    assert kinds(Oracle(shop)) == []  # type: ignore[arg-type]


def test_pods_of_the_current_revision_tell_crash_loop_leak_and_readiness_apart(shop: Observed) -> None:
    shop.release("cart", image="opslab/shop-cart:1.2.0")
    shop.release("checkout", image="opslab/shop-checkout:1.3.0")
    shop.release("catalog", image="opslab/shop-catalog:1.4.0")
    base = {"phase": "Running", "ready": False, "restarts": 0, "waiting": "", "last_terminated": "", "created": OLD}
    shop.pod_rows = [
        {**base, "name": "cart-a", "service": "cart", "revision_hash": "cart-2", "ready": True},
        {**base, "name": "checkout-a", "service": "checkout", "revision_hash": "checkout-2", "restarts": 3,
         "waiting": "CrashLoopBackOff", "last_terminated": "Error"},
        {**base, "name": "catalog-a", "service": "catalog", "revision_hash": "catalog-2"},
        {**base, "name": "catalog-old", "service": "catalog", "revision_hash": "catalog-1", "ready": True},
    ]  # fmt: skip
    shop.memory = {"cart-a": 300 * 2**20, "catalog-old": 96 * 2**20}
    assert kinds(Oracle(shop)) == [  # type: ignore[arg-type]
        ("cart", "memory-leak"),
        ("catalog", "failing-readiness"),
        ("checkout", "crash-loop"),
    ]


def test_a_node_that_is_not_ready_is_drained(shop: Observed) -> None:
    shop.nodes_.append({"name": "n2", "ready": False, "reason": "KubeletNotReady", "cordoned": False, "taints": []})
    oracle = Oracle(shop)  # type: ignore[arg-type]
    (finding,) = oracle.findings()
    assert (finding.service, finding.fault_type) == ("node", "node-not-ready")
    finding.action()
    assert shop.actions == [("drain", "n2")]


def test_a_slow_victim_whose_current_replicaset_is_old_is_not_rolled_back(
    shop: Observed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """checkout was rolled back to its original ReplicaSet after an earlier incident: its previous
    revision (the bad one) differs, but rolling back to it would re-inject the old fault."""
    monkeypatch.setattr(oracle_module, "PERSISTENT", 0.0)
    shop.release("checkout", image="opslab/shop-checkout:1.3.0", seconds_ago=900)
    shop.history["checkout"].append({**shop.history["checkout"][0], "revision": 3})  # the old ReplicaSet, current again
    shop.release("payments", image="opslab/shop-payments:1.0.1", seconds_ago=60)
    shop.sli["slow_ratio"] = {"checkout": 0.8, "gateway": 0.7}  # payments' own SLI lags behind
    assert kinds(Oracle(shop)) == []  # type: ignore[arg-type]
    shop.sli["slow_ratio"]["payments"] = 0.9
    assert kinds(Oracle(shop)) == [("payments", "latency")]  # type: ignore[arg-type]
