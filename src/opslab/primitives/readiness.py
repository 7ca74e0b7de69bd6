"""Bounded waiting: poll a probe until it passes or a deadline passes."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opslab.primitives.clock import SYSTEM_CLOCK, Clock


@dataclass(frozen=True)
class ProbeResult:
    """One observation: whether the thing is ready, and a short reason either way."""

    ok: bool
    detail: str = ""

    @classmethod
    def passed(cls, detail: str = "ready") -> ProbeResult:
        return cls(True, detail)

    @classmethod
    def failed(cls, detail: str) -> ProbeResult:
        return cls(False, detail)


Probe = Callable[[], ProbeResult]


class WaitTimeout(Exception):
    """The probe did not pass before the deadline. Carries the last observation."""

    def __init__(self, what: str, timeout: float, last: ProbeResult) -> None:
        self.what = what
        self.timeout = timeout
        self.last = last
        super().__init__(f"{what} was not ready after {timeout:.0f}s: {last.detail}")


def safe_probe(probe: Probe) -> ProbeResult:
    """Run a probe; an exception it raises counts as a failed observation, not a crash."""
    try:
        return probe()
    except Exception as exc:
        return ProbeResult.failed(f"{type(exc).__name__}: {exc}".splitlines()[0][:300])


def wait_until(
    probe: Probe,
    *,
    what: str,
    timeout: float,
    interval: float = 0.25,
    max_interval: float = 2.0,
    clock: Clock = SYSTEM_CLOCK,
    abort: Callable[[], str | None] | None = None,
) -> ProbeResult:
    """Poll ``probe`` with growing intervals until it passes; raise WaitTimeout at the deadline.

    ``abort`` is asked between polls; a non-empty answer stops waiting early (for example when
    the process being waited for has exited) and is raised as the WaitTimeout's detail.
    """
    deadline = clock.monotonic() + timeout
    delay = interval
    last = ProbeResult.failed("not probed yet")
    while True:
        last = safe_probe(probe)
        if last.ok:
            return last
        if abort is not None:
            reason = abort()
            if reason:
                raise WaitTimeout(what, timeout, ProbeResult.failed(reason))
        remaining = deadline - clock.monotonic()
        if remaining <= 0:
            raise WaitTimeout(what, timeout, last)
        clock.sleep(min(delay, remaining))
        delay = min(delay * 1.5, max_interval)


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.25) -> Any:
    """The first truthy value of ``predicate`` within ``timeout`` seconds, else its last one.

    Unlike ``eventually``, exceptions propagate: a predicate can fail the check at once (say, when
    the program being waited on died).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)
