"""The shop's metrics (RED and saturation per service) and its JSON logs (one file per service)."""

from __future__ import annotations

import json
import logging
import logging.handlers
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from opslab.shop.topology import ROUTES, SERVICES

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """Every series the shop exports, in one registry (served at /metrics)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "shop_http_requests",
            "HTTP requests handled by a shop service, by route and status code.",
            ["service", "route", "code"],
            registry=r,
        )
        self.duration = Histogram(
            "shop_http_request_duration_seconds",
            "Time a shop service took to answer a request, including the services it called.",
            ["service", "route"],
            buckets=BUCKETS,
            registry=r,
        )
        self.inflight = Gauge(
            "shop_http_requests_in_flight", "Requests a shop service is handling right now.", ["service"], registry=r
        )
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
        self.consumer_lag = Gauge(
            "shop_orders_consumer_lag_messages",
            "Messages in topic orders not yet processed by the orders-worker consumer group.",
            registry=r,
        )
        self.overhead = Histogram(
            "shop_simulator_overhead_seconds",
            "Time the simulator added to a request beyond the latency its model asked for.",
            buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1),
            registry=r,
        )
        self.dependency_up = Gauge(
            "shop_dependency_up", "Whether a backing service answers (1) or not (0).", ["dependency"], registry=r
        )
        # Create every (service, route) child up front: no series appears late, and lookups are cheap.
        for route in ROUTES:
            for service in ("gateway", *route.calls):
                self.duration.labels(service, route.name)
                for code in ("200", "500", "502", "503"):
                    self.requests.labels(service, route.name, code)
        for service in SERVICES:
            self.saturation.labels(service)
            self.ready.labels(service)
            self.inflight.labels(service)


class ServiceLogs:
    """One JSON-lines file per service under ``directory`` (rotated at 20 MB)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.loggers: dict[str, logging.Logger] = {}
        for service in SERVICES:
            logger = logging.getLogger(f"opslab.shop.access.{service}")
            logger.propagate = False
            logger.setLevel(logging.INFO)
            for old in list(logger.handlers):
                logger.removeHandler(old)
            handler = logging.handlers.RotatingFileHandler(
                directory / f"{service}.log", maxBytes=20 * 2**20, backupCount=1
            )
            handler.setFormatter(logging.Formatter("%(message)s"))
            logger.addHandler(handler)
            self.loggers[service] = logger

    def write(self, service: str, level: str, message: str, **fields: object) -> None:
        record = {"ts": time.time(), "service": service, "level": level, "msg": message, **fields}
        self.loggers[service].info(json.dumps(record, separators=(",", ":")))
