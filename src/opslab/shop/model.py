"""The queueing model behind every hop of the shop.

Each service is a multi-server queue (M/M/c): its servers are its ready replicas times a
per-replica concurrency, its service time grows when its CPU limit is below the reference, and
its arrival rate is measured from the traffic it actually receives. Waiting time follows the
Sakasegawa approximation of M/M/c; past saturation the excess load is shed with 503s and the
rest waits the full queue timeout. Active faults add latency, errors or an outage on top, or hold
the answer of a share of successful requests (a hang: the work is done, the reply comes late).

Everything here is pure: time and randomness are passed in, so a seed reproduces a run.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

QUEUE_TIMEOUT = 1.0
"""Seconds a request waits in a saturated queue before it is served (or shed)."""
REFERENCE_CPU = 0.5
"""CPU limit (cores) at which a service runs at its base service time."""
MAX_SLOWDOWN = 8.0


@dataclass(frozen=True)
class ServiceSpec:
    """Static properties of a service."""

    name: str
    base_ms: float
    """Mean service time at the reference CPU limit, in milliseconds."""
    concurrency: int = 8
    """Requests one replica serves at once."""


@dataclass(frozen=True)
class Capacity:
    """What the cluster gives a service right now."""

    ready: int
    """Ready replicas (pods)."""
    cpu_limit: float = REFERENCE_CPU
    """CPU limit per replica, in cores."""
    bad_ready: int = 0
    """Ready replicas running a bad release (their requests fail)."""


@dataclass(frozen=True)
class Effects:
    """The combined effect of the faults active on a service."""

    latency_ms: float = 0.0
    error_rate: float = 0.0
    outage: bool = False
    hang_rate: float = 0.0
    """Share of successful requests whose answer is held for ``hang_ms`` after their work is done."""
    hang_ms: float = 0.0


@dataclass(frozen=True)
class Outcome:
    """The modelled result of one hop."""

    latency: float
    """Seconds the hop takes (before any real I/O)."""
    status: int
    """HTTP status the hop answers with."""
    reason: str = ""
    hold: float = 0.0
    """Seconds the answer is held after the hop's work is done (a hang fault)."""

    @property
    def ok(self) -> bool:
        return self.status < 500


@dataclass
class RateMeter:
    """Arrival rate as an exponentially weighted moving average over ``window`` seconds."""

    window: float = 5.0
    rate: float = 0.0
    _last: float | None = field(default=None, repr=False)

    def observe(self, now: float) -> float:
        """Record one arrival at ``now`` and return the updated rate (arrivals per second)."""
        if self._last is None:
            self._last = now
            self.rate = 1.0 / self.window
            return self.rate
        elapsed = max(now - self._last, 1e-6)
        decay = math.exp(-elapsed / self.window)
        self.rate = self.rate * decay + (1.0 - decay) / elapsed
        self._last = now
        return self.rate

    def current(self, now: float) -> float:
        """The rate as of ``now``, decayed if nothing arrived lately."""
        if self._last is None:
            return 0.0
        return self.rate * math.exp(-max(now - self._last, 0.0) / self.window)


def service_time(spec: ServiceSpec, capacity: Capacity) -> float:
    """Mean service time in seconds, slowed down by a CPU limit below the reference."""
    cpu = max(capacity.cpu_limit, 1e-3)
    slowdown = min(max(REFERENCE_CPU / cpu, 1.0), MAX_SLOWDOWN)
    return spec.base_ms / 1000.0 * slowdown


def utilisation(spec: ServiceSpec, capacity: Capacity, arrival_rate: float) -> float:
    """Offered load per server (rho). Infinite when no replica is ready."""
    servers = capacity.ready * spec.concurrency
    if servers == 0:
        return math.inf
    return arrival_rate * service_time(spec, capacity) / servers


def queue_wait(spec: ServiceSpec, capacity: Capacity, arrival_rate: float) -> float:
    """Mean time in queue (seconds) for an unsaturated M/M/c queue (Sakasegawa's formula)."""
    rho = utilisation(spec, capacity, arrival_rate)
    if rho >= 1.0:
        return QUEUE_TIMEOUT
    servers = capacity.ready * spec.concurrency
    mean = service_time(spec, capacity)
    return min(mean * rho ** (math.sqrt(2 * (servers + 1)) - 1) / (servers * (1 - rho)), QUEUE_TIMEOUT)


def hop(
    spec: ServiceSpec,
    capacity: Capacity,
    arrival_rate: float,
    effects: Effects,
    rng: random.Random,
) -> Outcome:
    """The latency and status of one request to ``spec`` under the given conditions."""
    if effects.outage:
        return Outcome(0.002, 503, "dependency outage (fault)")
    if capacity.ready == 0:
        return Outcome(0.001, 503, "no ready replicas")
    rho = utilisation(spec, capacity, arrival_rate)
    mean = service_time(spec, capacity)
    latency = rng.expovariate(1.0 / mean) + queue_wait(spec, capacity, arrival_rate) + effects.latency_ms / 1000.0
    if rho >= 1.0 and rng.random() < 1.0 - 1.0 / rho:
        return Outcome(QUEUE_TIMEOUT, 503, "overloaded: request shed")
    if capacity.bad_ready and rng.random() < capacity.bad_ready / capacity.ready:
        return Outcome(latency, 500, "bad release")
    if effects.error_rate and rng.random() < effects.error_rate:
        return Outcome(latency, 500, "injected error")
    if effects.hang_rate and rng.random() < effects.hang_rate:
        return Outcome(latency, 200, "answer held (fault)", hold=effects.hang_ms / 1000.0)
    return Outcome(latency, 200)
