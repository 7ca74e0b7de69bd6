"""The scorer's rules on hand-made evidence: each rule can fail, and gaming it does not pay."""

from __future__ import annotations

from opslab.incidents.catalog import Finding
from opslab.incidents.scorer import Action, Evidence, SliSample, Submission, recovered_since, score

T0 = 1_000_000.0
SERVICES = ("gateway", "catalog", "payments")


def samples(until: float, bad: dict[str, tuple[float, float]] | None = None) -> list[SliSample]:
    """Samples every 5 s from T0 to T0 + until; ``bad`` maps a service to a (from, to) window of errors."""
    out = []
    for step in range(int(until // 5) + 1):
        t = T0 + step * 5
        for service in SERVICES:
            start, end = (bad or {}).get(service, (-1.0, -1.0))
            broken = T0 + start <= t < T0 + end
            out.append(SliSample(t, service, 0.5 if broken else 0.0, 0.0))
    return out


def evidence(**overrides: object) -> Evidence:
    base: dict[str, object] = {
        "answer": (Finding("gateway", "bad-rollout"),),
        "injected_at": T0,
        "ended_at": T0 + 200,
        "first_alert_at": T0 + 45,
        "submissions": [Submission(T0 + 60, "gateway", "bad-rollout")],
        "actions": [Action(T0 + 70, "patch", "deployments", "shop", "gateway")],
        "samples": samples(200, {"gateway": (0, 90)}),
    }
    base.update(overrides)
    return Evidence(**base)  # type: ignore[arg-type]


def test_a_clean_fast_mitigation_scores_full_marks() -> None:
    result = score(evidence())
    assert result.points == 100, result.reasons
    assert result.mitigated and result.detected
    assert result.time_to_detect == 60
    assert result.alerted_after == 45
    assert result.time_to_mitigate == 90  # the SLIs came back at 90 s, after the action at 70 s
    assert result.reasons == []


def test_a_workload_away_from_its_intent_is_not_mitigated_even_with_green_slis() -> None:
    # Scaling the broken Deployment to zero makes its errors disappear from the gateway's SLI.
    result = score(evidence(intent_problems=["gateway: 0 replicas, intended 2"]))
    assert not result.mitigated
    assert result.breakdown["mitigate"] == 0 and result.breakdown["speed"] == 0
    assert any("intended state" in r for r in result.reasons)


def test_deleting_an_object_is_damage_but_deleting_a_pod_is_a_restart() -> None:
    deleted = evidence(
        actions=[Action(T0 + 70, "delete", "deployments", "shop", "gateway")],
        intent_problems=["gateway: the Deployment was deleted"],
    )
    result = score(deleted)
    assert result.deleted == ["delete deployments shop/gateway"]
    assert not result.mitigated and result.points <= 40
    restart = score(evidence(actions=[Action(T0 + 70, "delete", "pods", "shop", "gateway-abc")]))
    assert restart.deleted == []


def test_removing_a_fault_carrier_is_tampering_not_mitigation() -> None:
    result = score(evidence(tampered=["the fault label of node kwok-node-1 was removed"]))
    assert not result.mitigated
    assert any("carrier" in r for r in result.reasons)


def test_slis_that_have_not_held_long_enough_are_not_mitigated() -> None:
    result = score(evidence(samples=samples(200, {"gateway": (0, 185)})))
    assert not result.mitigated
    assert recovered_since(evidence(samples=samples(200, {"gateway": (0, 185)}))) is None


def test_samples_that_stop_before_the_end_prove_nothing() -> None:
    assert recovered_since(evidence(samples=samples(100))) is None


def test_wrong_and_missing_diagnoses_cost_points() -> None:
    wrong = score(evidence(submissions=[Submission(T0 + 60, "payments", "latency")]))
    assert wrong.localised == 0 and wrong.diagnosed == 0
    assert wrong.wrong_submissions == ["payments / latency"]
    assert wrong.breakdown["penalty"] == -5
    half = score(evidence(submissions=[Submission(T0 + 60, "gateway", "crash-loop")]))
    assert half.localised == 1 and half.diagnosed == 0
    none = score(evidence(submissions=[]))
    assert "no diagnosis was submitted" in none.reasons


def test_guessing_every_type_does_not_pay() -> None:
    guesses = [Submission(T0 + 60, "gateway", t) for t in ("bad-rollout", "crash-loop", "latency", "memory-leak")]
    result = score(evidence(submissions=guesses))
    assert result.diagnosed == 1
    assert result.points < score(evidence()).points - 10


def test_a_combined_incident_needs_every_finding() -> None:
    answer = (Finding("payments", "latency"), Finding("cart", "crash-loop"))
    one = score(evidence(answer=answer, submissions=[Submission(T0 + 60, "payments", "latency")]))
    assert one.localised == 0.5 and one.diagnosed == 0.5
    assert any("missed" in r for r in one.reasons)


def test_a_quiet_incident_rewards_doing_nothing_and_punishes_every_change() -> None:
    quiet = {"answer": (Finding("none", "none"),), "samples": samples(200), "first_alert_at": None}
    calm = score(evidence(**quiet, submissions=[Submission(T0 + 60, "none", "none")], actions=[]))
    assert calm.points == 100 and calm.false_actions == 0
    busy = score(
        evidence(
            **quiet,
            submissions=[Submission(T0 + 60, "none", "none")],
            actions=[
                Action(T0 + 30, "patch", "deployments", "shop", "catalog"),
                Action(T0 + 40, "patch", "deployments/scale", "shop", "cart"),
            ],
        )
    )
    assert busy.false_actions == 2
    assert not busy.mitigated
    assert busy.points <= 50


def test_touching_a_healthy_service_that_then_breaks_is_harm() -> None:
    actions = [
        Action(T0 + 70, "patch", "deployments", "shop", "gateway"),
        Action(T0 + 75, "patch", "deployments", "shop", "payments"),
    ]
    harmed = score(evidence(actions=actions, samples=samples(300, {"gateway": (0, 90), "payments": (80, 120)}),
                            ended_at=T0 + 300))  # fmt: skip
    assert harmed.harmed == ["payments"]
    assert harmed.breakdown["penalty"] == -5
    untouched = score(evidence(samples=samples(300, {"gateway": (0, 90), "payments": (80, 120)}), ended_at=T0 + 300))
    assert untouched.harmed == []


def test_slow_mitigation_earns_less_speed() -> None:
    slow = score(evidence(samples=samples(700, {"gateway": (0, 400)}), ended_at=T0 + 700))
    assert slow.mitigated
    assert 0 < slow.breakdown["speed"] < 10
    assert score(evidence(samples=samples(900, {"gateway": (0, 650)}), ended_at=T0 + 900)).breakdown["speed"] == 0
