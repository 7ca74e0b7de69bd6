import random
import statistics

import pytest

from opslab.shop import model
from opslab.shop.faults import Fault, FaultType, effects_on
from opslab.shop.model import Capacity, Effects, ServiceSpec

SPEC = ServiceSpec("payments", base_ms=40.0, concurrency=2)


NO_EFFECTS = Effects()


def mean_latency(capacity: Capacity, rate: float, effects: Effects = NO_EFFECTS, n: int = 4000) -> float:
    rng = random.Random(7)
    return statistics.fmean(model.hop(SPEC, capacity, rate, effects, rng).latency for _ in range(n))


def test_latency_grows_with_load() -> None:
    capacity = Capacity(ready=2)
    light, medium, heavy = (mean_latency(capacity, rate) for rate in (5, 60, 95))
    assert light < medium < heavy
    assert heavy > 2 * light


def test_latency_falls_with_replicas() -> None:
    assert mean_latency(Capacity(ready=4), 80) < mean_latency(Capacity(ready=2), 80)


def test_a_lower_cpu_limit_slows_the_service() -> None:
    assert mean_latency(Capacity(ready=2, cpu_limit=0.25), 5) > 1.8 * mean_latency(Capacity(ready=2, cpu_limit=0.5), 5)


def test_zero_ready_replicas_give_errors() -> None:
    outcome = model.hop(SPEC, Capacity(ready=0), 1.0, Effects(), random.Random(1))
    assert outcome.status == 503 and outcome.reason == "no ready replicas"


def test_saturation_sheds_the_excess() -> None:
    rng = random.Random(3)
    outcomes = [model.hop(SPEC, Capacity(ready=1), 100.0, Effects(), rng) for _ in range(5000)]
    shed = sum(1 for o in outcomes if o.status == 503) / len(outcomes)
    rho = model.utilisation(SPEC, Capacity(ready=1), 100.0)
    assert rho == pytest.approx(2.0)
    assert shed == pytest.approx(1 - 1 / rho, abs=0.03)


def test_a_seed_reproduces_a_run() -> None:
    def run(seed: int) -> list[tuple[float, int]]:
        rng = random.Random(seed)
        return [
            (o.latency, o.status)
            for o in (model.hop(SPEC, Capacity(ready=2), 50, Effects(error_rate=0.2), rng) for _ in range(200))
        ]

    assert run(11) == run(11)
    assert run(11) != run(12)


def test_faults_add_latency_errors_and_outages() -> None:
    rng = random.Random(5)
    assert model.hop(SPEC, Capacity(ready=2), 1, Effects(outage=True), rng).status == 503
    slow = mean_latency(Capacity(ready=2), 1, Effects(latency_ms=300))
    assert slow == pytest.approx(0.3 + 0.04, abs=0.02)
    failing = [model.hop(SPEC, Capacity(ready=2), 1, Effects(error_rate=0.3), rng).status for _ in range(3000)]
    assert failing.count(500) / len(failing) == pytest.approx(0.3, abs=0.03)


def test_a_bad_release_fails_in_proportion_to_its_pods() -> None:
    rng = random.Random(9)
    statuses = [model.hop(SPEC, Capacity(ready=4, bad_ready=1), 1, Effects(), rng).status for _ in range(4000)]
    assert statuses.count(500) / len(statuses) == pytest.approx(0.25, abs=0.03)


def test_effects_combine_only_the_target_s_faults() -> None:
    faults = [
        Fault("a", FaultType.LATENCY, target="payments", latency_ms=100),
        Fault("b", FaultType.LATENCY, target="payments", latency_ms=50),
        Fault("c", FaultType.ERROR_RATE, target="payments", error_rate=0.5),
        Fault("d", FaultType.OUTAGE, target="catalog"),
    ]
    assert effects_on("payments", faults) == Effects(latency_ms=150, error_rate=0.5, outage=False)
    assert effects_on("catalog", faults).outage
    assert effects_on("cart", faults) == Effects()


def test_rate_meter_tracks_a_steady_rate() -> None:
    meter = model.RateMeter(window=5.0)
    t = 0.0
    for _ in range(2000):
        t += 0.02  # 50 per second
        meter.observe(t)
    assert meter.current(t) == pytest.approx(50, rel=0.05)
    assert meter.current(t + 20) < 2


def test_a_hang_holds_the_answer_of_its_share_of_successful_requests() -> None:
    rng = random.Random(4)
    effects = Effects(hang_rate=0.25, hang_ms=2000)
    outcomes = [model.hop(SPEC, Capacity(ready=2), 1, effects, rng) for _ in range(4000)]
    held = [o for o in outcomes if o.hold]
    assert len(held) / len(outcomes) == pytest.approx(0.25, abs=0.03)
    assert all(o.ok and o.hold == 2.0 for o in held)
    assert all(o.hold == 0 for o in (model.hop(SPEC, Capacity(ready=2), 1, Effects(), rng) for _ in range(100)))
