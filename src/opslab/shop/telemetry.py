"""The shop's metrics (RED and saturation per service) and its JSON logs (one file per service)."""

from __future__ import annotations

import bisect
import io
import json
import math
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from opslab.shop.contract import Reason
from opslab.shop.poison import PoisonKind
from opslab.shop.topology import ROUTES, SERVICES

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


DURATION_BUCKETS = BUCKETS
OVERHEAD_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1)


class Buckets:
    """A histogram's state as plain numbers: cumulative bucket counts are computed at scrape time."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.sum += value
        self.counts[bisect.bisect_left(self.bounds, value)] += 1

    def cumulative(self) -> list[tuple[str, float]]:
        total, out = 0, []
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            total += count
            out.append(("+Inf" if bound == math.inf else repr(bound), float(total)))
        return out


class RequestStats:
    """The request path's counters: plain dicts and lists, updated only from the event loop.

    prometheus_client's metric objects take a lock per update; at a thousand requests per second
    and several hops each, that is a measurable share of the simulator's time. These numbers are
    exported by RequestStatsCollector (a client_python Collector) when Prometheus scrapes.
    """

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = {}
        self.durations: dict[tuple[str, str], Buckets] = {}
        self.inflight: dict[str, int] = dict.fromkeys(SERVICES, 0)
        self.overhead = Buckets(OVERHEAD_BUCKETS)
        for route in ROUTES:
            for service in ("gateway", *route.calls):
                self.durations[(service, route.name)] = Buckets(DURATION_BUCKETS)
                for code in (200, 500, 502, 503):
                    self.requests[(service, route.name, code)] = 0

    def record(self, service: str, route: str, status: int, seconds: float) -> None:
        key = (service, route, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        buckets = self.durations.get((service, route))
        if buckets is None:
            buckets = self.durations[(service, route)] = Buckets(DURATION_BUCKETS)
        buckets.observe(seconds)


class RequestStatsCollector(Collector):
    """Exports RequestStats as shop_http_requests_total, ..._duration_seconds, ..._in_flight and
    shop_simulator_overhead_seconds."""

    def __init__(self, stats: RequestStats) -> None:
        self.stats = stats

    def collect(self) -> Iterable[Metric]:
        stats = self.stats
        requests = CounterMetricFamily(
            "shop_http_requests", "HTTP requests handled by a shop service, by route and status code.",
            labels=["service", "route", "code"],
        )  # fmt: skip
        for (service, route, code), value in list(stats.requests.items()):
            requests.add_metric([service, route, str(code)], value)
        yield requests
        duration = HistogramMetricFamily(
            "shop_http_request_duration_seconds",
            "Time a shop service took to answer a request, including the services it called.",
            labels=["service", "route"],
        )
        for (service, route), buckets in list(stats.durations.items()):
            duration.add_metric([service, route], buckets.cumulative(), buckets.sum)
        yield duration
        inflight = GaugeMetricFamily(
            "shop_http_requests_in_flight", "Requests a shop service is handling right now.", labels=["service"]
        )
        for service, value in list(stats.inflight.items()):
            inflight.add_metric([service], value)
        yield inflight
        overhead = HistogramMetricFamily(
            "shop_simulator_overhead_seconds",
            "Time the simulator added to a request beyond the latency its model asked for.",
        )
        overhead.add_metric([], stats.overhead.cumulative(), stats.overhead.sum)
        yield overhead


class FulfilmentStats:
    """Fulfilment's counters, updated only from the event loop, exported by FulfilmentCollector."""

    def __init__(self) -> None:
        self.captures = 0
        self.duplicate_captures = 0
        self.replays = 0
        self.rejected: dict[str, int] = {}
        self.entries = 0
        self.ledgers = 0

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1


class FulfilmentCollector(Collector):
    """Exports FulfilmentStats as shop_fulfilment_*."""

    def __init__(self, stats: FulfilmentStats) -> None:
        self.stats = stats

    def collect(self) -> Iterable[Metric]:
        stats = self.stats
        yield CounterMetricFamily(
            "shop_fulfilment_captures", "Captures fulfilment recorded, in every ledger.", value=stats.captures
        )
        yield CounterMetricFamily(
            "shop_fulfilment_duplicate_captures",
            "Captures recorded for an order its ledger had already captured (a double capture).",
            value=stats.duplicate_captures,
        )
        yield CounterMetricFamily(
            "shop_fulfilment_idempotent_replays",
            "Capture requests answered with the first capture of their Idempotency-Key (nothing recorded).",
            value=stats.replays,
        )
        rejected = CounterMetricFamily(
            "shop_fulfilment_rejected", "Capture requests refused with a 4xx or 507, by reason.", labels=["reason"]
        )
        for reason, value in list(stats.rejected.items()):
            rejected.add_metric([reason], value)
        yield rejected
        yield GaugeMetricFamily(
            "shop_fulfilment_ledger_entries", "Captures held in memory, over all ledgers.", value=stats.entries
        )
        yield GaugeMetricFamily("shop_fulfilment_ledgers", "Ledgers holding captures.", value=stats.ledgers)


class Metrics:
    """Every series the shop exports, in one registry (served at /metrics)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.stats = RequestStats()
        r.register(RequestStatsCollector(self.stats))
        self.fulfilment = FulfilmentStats()
        r.register(FulfilmentCollector(self.fulfilment))
        self.saturation = Gauge(
            "shop_saturation_ratio",
            "Offered load per server of the service's queue (1 = saturated), from the queueing model.",
            ["service"],
            registry=r,
        )
        self.ready = Gauge("shop_ready_replicas", "Ready pods of the service's Deployment.", ["service"], registry=r)
        self.not_ready = Gauge(
            "shop_unready_replicas", "Pods of the service that exist but are not ready.", ["service"], registry=r
        )
        self.restarts = Gauge(
            "shop_container_restarts", "Container restarts summed over the service's pods.", ["service"], registry=r
        )
        self.memory = Gauge(
            "shop_container_memory_working_set_bytes",
            "Simulated memory working set of each pod of the service.",
            ["service", "pod"],
            registry=r,
        )
        self.orders_published = Counter(
            "shop_orders_published", "Order events checkout published to Kafka.", registry=r
        )
        self.orders_publish_failures = Counter(
            "shop_orders_publish_failures", "Order events Kafka did not accept.", registry=r
        )
        self.orders_consumed = Counter("shop_orders_consumed", "Order events orders-worker processed.", registry=r)
        self.orders_poisoned = Counter(
            "shop_orders_poisoned",
            "Broken order events checkout published (poison_order_rate setting or a poison-orders Fault), by kind.",
            ["kind"],
            registry=r,
        )
        self.orders_rejected = Counter(
            "shop_orders_rejected",
            "Order events orders-worker set aside because they break the order contract, by reason.",
            ["reason"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "shop_orders_consumer_lag_messages",
            "Messages in topic orders not yet processed by the orders-worker consumer group.",
            registry=r,
        )
        self.dependency_up = Gauge(
            "shop_dependency_up", "Whether a backing service answers (1) or not (0).", ["dependency"], registry=r
        )
        for service in SERVICES:
            self.saturation.labels(service)
            self.ready.labels(service)
        for reason in Reason:  # present at 0, so the first poison order counts in increase()
            self.orders_rejected.labels(reason.value)
        for kind in PoisonKind:
            self.orders_poisoned.labels(kind.value)


class ServiceLogs:
    """One JSON-lines file per service under ``directory``, rotated at ``max_bytes``.

    Written on the request path, so it is a plain buffered file per service (no logging
    machinery): a line costs a json.dumps and a memory copy. ``flush`` (called every second by
    the monitor) pushes the buffers to disk; each file is written by one thread only.

    Successful requests are logged up to ``info_per_second`` lines per service per second (as
    busy production services sample their access logs); errors are always logged.
    """

    def __init__(self, directory: Path, max_bytes: int = 20 * 2**20, info_per_second: int = 50) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.max_bytes = max_bytes
        self.info_per_second = info_per_second
        self._second: dict[str, int] = dict.fromkeys(SERVICES, 0)
        self._count: dict[str, int] = dict.fromkeys(SERVICES, 0)
        self.files: dict[str, io.TextIOWrapper] = {}
        self._lock = threading.Lock()  # the event loop, orders-worker and the monitor share the files
        self.written: dict[str, int] = {}
        for service in SERVICES:
            self._open(service)

    def _path(self, service: str) -> Path:
        return self.directory / f"{service}.log"

    def _open(self, service: str) -> None:
        path = self._path(service)
        self.files[service] = path.open("a", buffering=1 << 16, encoding="utf-8")
        self.written[service] = path.stat().st_size

    def sample(self, service: str) -> bool:
        """Whether a successful request of ``service`` should be logged (within this second's budget)."""
        second = int(time.monotonic())
        if self._second[service] != second:
            self._second[service], self._count[service] = second, 0
        self._count[service] += 1
        return self._count[service] <= self.info_per_second

    def write(self, service: str, level: str, message: str, **fields: object) -> None:
        record = {"ts": round(time.time(), 3), "service": service, "level": level, "msg": message, **fields}
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self._lock:
            self.files[service].write(line)
            self.written[service] += len(line)
            if self.written[service] > self.max_bytes:
                self.files[service].close()
                self._path(service).replace(self._path(service).with_suffix(".log.1"))
                self._open(service)

    def flush(self) -> None:
        with self._lock:
            for handle in self.files.values():
                handle.flush()

    def close(self) -> None:
        with self._lock:
            for handle in self.files.values():
                handle.close()
