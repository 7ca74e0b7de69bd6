"""The oracle and the reasoning it shares (opslab.agent.diagnosis) on hand-made observations (a
stand-in for the toolbox's read tools; the real toolbox and the real platform are in
tests/integration/test_incidents.py)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from opslab.agent.oracle import Oracle
from opslab.agent.toolbox import PolicyDenied
from tests.unit.shop_standin import OLD, Observed, stamp


@pytest.fixture
def shop() -> Observed:
    return Observed()


def kinds(oracle: Oracle) -> list[tuple[str, str]]:
    return sorted((f.service, f.fault_type) for f in oracle.findings())


def at_once(shop: Observed) -> Oracle:
    """An oracle that acts on a bad signal the first time it sees it."""
    oracle = Oracle(shop)  # type: ignore[arg-type]
    oracle.persistence.seconds = 0
    return oracle


def test_a_healthy_shop_has_no_findings_even_after_old_releases(shop: Observed) -> None:
    shop.release("payments", image="opslab/shop-payments:1.0.1", seconds_ago=600)
    shop.sli["slow_ratio"] = {"payments": 0.01, "gateway": 0.0}
    assert kinds(Oracle(shop)) == []  # type: ignore[arg-type]


def test_lost_replicas_are_capacity_loss_and_scaled_back_to_the_intended_size(shop: Observed) -> None:
    shop.deployments_["catalog"].update(replicas=0, ready=0, updated=0, intended=3)
    oracle = Oracle(shop)  # type: ignore[arg-type]
    (finding,) = oracle.findings()
    assert (finding.service, finding.fault_type) == ("catalog", "capacity-loss")
    oracle._act(finding)
    assert shop.actions == [("scale", "catalog", "3")]


QUOTA_REFUSAL = (
    'pods "catalog-6d9f7-x2x7q" is forbidden: exceeded quota: opslab-quota, requested: pods=1, used: pods=31, '
    "limited: pods=31"
)


def refused(
    shop: Observed, reason: str = "FailedCreate", message: str = QUOTA_REFUSAL, *, seconds_ago: float = 10,
    replica_set: str = "catalog-catalog-1",
) -> None:  # fmt: skip
    """catalog short of ready pods, and an event about its ReplicaSet (the current one by default)."""
    shop.deployments_["catalog"].update(ready=0, unavailable=2)
    shop.events_.append({"time": stamp(seconds_ago), "type": "Warning", "reason": reason,
                         "object": f"ReplicaSet/{replica_set}", "message": message})  # fmt: skip


def test_pods_a_quota_refuses_are_quota_exhausted_and_terraform_plans_then_applies_that_plan(shop: Observed) -> None:
    refused(shop)
    oracle = Oracle(shop)  # type: ignore[arg-type]
    (finding,) = oracle.findings()
    assert (finding.service, finding.fault_type) == ("catalog", "quota-exhausted")
    oracle._act(finding)
    assert shop.actions == [("terraform_plan", "platform"), ("terraform_apply", "platform", "d1g35t")]


@pytest.mark.parametrize(
    "case",
    [
        {"message": 'pods "catalog-x" is forbidden: error looking up service account shop/catalog'},
        {"reason": "SuccessfulCreate", "message": "Created pod: catalog-6d9f7-x2x7q"},
        {"ready": 2},  # every replica is ready now
        {"seconds_ago": 1800},  # a refusal of an incident half an hour ago
        {"replica_set": "catalog-0ld"},  # a revision that is gone
    ],
    ids=["not-a-quota", "not-a-failure", "all-ready", "old", "old-revision"],
)
def test_only_a_recent_quota_refusal_of_a_short_deployment_is_quota_exhausted(
    shop: Observed, case: dict[str, Any]
) -> None:
    refused(
        shop, case.get("reason", "FailedCreate"), case.get("message", QUOTA_REFUSAL),
        seconds_ago=case.get("seconds_ago", 10), replica_set=case.get("replica_set", "catalog-catalog-1"),
    )  # fmt: skip
    shop.deployments_["catalog"].update(ready=case.get("ready", 0))
    assert ("catalog", "quota-exhausted") not in kinds(Oracle(shop))  # type: ignore[arg-type]


def test_the_deepest_slow_service_with_a_new_image_is_blamed(shop: Observed) -> None:
    shop.release("payments", image="opslab/shop-payments:1.0.1")
    shop.sli["slow_ratio"] = {"payments": 0.9, "checkout": 0.9, "gateway": 0.8, "catalog": 0.0}
    assert kinds(at_once(shop)) == [("payments", "latency")]


def test_a_new_cpu_limit_behind_slowness_is_cpu_throttling(shop: Observed) -> None:
    shop.release("payments", cpu="100m")
    shop.sli["slow_ratio"] = {"payments": 0.6, "checkout": 0.5, "gateway": 0.4}
    assert kinds(at_once(shop)) == [("payments", "cpu-throttling")]


def test_errors_without_a_release_to_undo_are_left_alone(shop: Observed) -> None:
    shop.sli["error_ratio"] = {"gateway": 0.5}
    assert kinds(at_once(shop)) == []


def test_a_blip_is_not_acted_on_until_it_lasts(shop: Observed) -> None:
    shop.release("gateway", image="opslab/shop-gateway:1.1.0")
    shop.sli["error_ratio"] = {"gateway": 0.5}
    oracle = Oracle(shop)  # type: ignore[arg-type]
    assert kinds(oracle) == []
    shop.sli["error_ratio"] = {"gateway": 0.0}
    assert kinds(oracle) == []
    shop.sli["error_ratio"] = {"gateway": 0.5}
    oracle.findings()
    oracle.persistence.since[("gateway", "errors")] -= oracle.persistence.seconds
    assert kinds(oracle) == [("gateway", "bad-rollout")]


def test_a_rollout_still_settling_is_not_blamed(shop: Observed) -> None:
    shop.release("gateway", image="opslab/shop-gateway:1.0.0", seconds_ago=5)  # e.g. a rollback under way
    shop.sli["error_ratio"] = {"gateway": 0.5}
    assert kinds(at_once(shop)) == []


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
    oracle._act(finding)
    assert shop.actions == [("drain", "n2")]


def test_a_slow_victim_whose_current_replicaset_is_old_is_not_rolled_back(shop: Observed) -> None:
    """checkout was rolled back to its original ReplicaSet after an earlier incident: its previous
    revision (the bad one) differs, but rolling back to it would re-inject the old fault."""
    shop.release("checkout", image="opslab/shop-checkout:1.3.0", seconds_ago=900)
    shop.history["checkout"].append({**shop.history["checkout"][0], "revision": 3})  # the old ReplicaSet, current again
    shop.release("payments", image="opslab/shop-payments:1.0.1", seconds_ago=60)
    shop.sli["slow_ratio"] = {"checkout": 0.8, "gateway": 0.7}  # payments' own SLI lags behind
    assert kinds(at_once(shop)) == []
    shop.sli["slow_ratio"]["payments"] = 0.9
    assert kinds(at_once(shop)) == [("payments", "latency")]


def test_a_quiet_shift_is_submitted_as_none_without_a_change(shop: Observed) -> None:
    submitted: list[tuple[str, str]] = []
    shop.submit = lambda service, fault_type, notes="": submitted.append((service, fault_type))  # type: ignore[attr-defined]
    run = Oracle(shop, poll=0.01, quiet_after=0.05).run(time.monotonic() + 5)  # type: ignore[arg-type]
    assert run.quiet and submitted == [("none", "none")] and shop.actions == []


def test_a_denied_mitigation_is_escalated_not_retried(shop: Observed) -> None:
    shop.deployments_["catalog"].update(replicas=0, ready=0, updated=0, intended=3)
    shop.submit = lambda service, fault_type, notes="": None  # type: ignore[attr-defined]

    def denied(service: str, replicas: int) -> dict[str, Any]:
        shop.actions.append(("scale", service, str(replicas)))
        raise PolicyDenied("scale", ("rate limit",))

    shop.scale = denied  # type: ignore[method-assign]
    run = Oracle(shop, poll=0.01).run(time.monotonic() + 0.3)  # type: ignore[arg-type]
    assert run.escalations == ["catalog / capacity-loss: scale denied by policy: rate limit"]
    assert shop.actions == [("scale", "catalog", "3")], "a denied action was tried again"
