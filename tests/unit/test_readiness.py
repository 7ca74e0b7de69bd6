import pytest

from opslab.primitives.clock import FakeClock
from opslab.primitives.readiness import ProbeResult, WaitTimeout, wait_for, wait_until


def test_returns_as_soon_as_the_probe_passes() -> None:
    clock = FakeClock()
    answers = iter([ProbeResult.failed("starting"), ProbeResult.failed("starting"), ProbeResult.passed("up")])
    result = wait_until(lambda: next(answers), what="thing", timeout=10, clock=clock)
    assert result.detail == "up"
    assert len(clock.slept) == 2


def test_times_out_with_the_last_observation() -> None:
    clock = FakeClock()
    with pytest.raises(WaitTimeout, match=r"thing was not ready after 5s: still starting"):
        wait_until(lambda: ProbeResult.failed("still starting"), what="thing", timeout=5, clock=clock)
    assert clock.now == pytest.approx(5)
    assert max(clock.slept) <= 2.0


def test_an_exception_in_the_probe_is_a_failed_observation() -> None:
    clock = FakeClock()

    def probe() -> ProbeResult:
        raise ConnectionRefusedError("connection refused")

    with pytest.raises(WaitTimeout, match="ConnectionRefusedError: connection refused"):
        wait_until(probe, what="thing", timeout=1, clock=clock)


def test_abort_stops_waiting_early() -> None:
    clock = FakeClock()
    with pytest.raises(WaitTimeout, match="process exited"):
        wait_until(
            lambda: ProbeResult.failed("no"),
            what="thing",
            timeout=60,
            clock=clock,
            abort=lambda: "process exited",
        )
    assert clock.now == 0


def test_wait_for_returns_the_first_truthy_value_or_the_last_one_and_lets_errors_through() -> None:
    answers = iter([0, "", 7, 8])
    assert wait_for(lambda: next(answers), timeout=5, interval=0) == 7
    assert wait_for(lambda: [], timeout=0.05, interval=0.01) == []

    def broken() -> int:
        raise RuntimeError("the program died")

    with pytest.raises(RuntimeError, match="died"):
        wait_for(broken, timeout=5)
