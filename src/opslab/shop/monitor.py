"""Once a second: refresh the per-service gauges and emit Kubernetes Events on transitions.

Events (on the service's Deployment, reason and message in full sentences) mark what an
operator would want to see in `kubectl get events -n shop`: a service losing all ready pods or
getting them back, a service saturating or recovering, a fault becoming active or going away.
"""

from __future__ import annotations

import datetime
import logging
import math
import threading
import time
from collections.abc import Callable

from kubernetes import client
from kubernetes.client.rest import ApiException

from opslab.shop import model
from opslab.shop.cluster import ClusterView, PodInfo
from opslab.shop.faults import FaultType
from opslab.shop.telemetry import Metrics, ServiceLogs
from opslab.shop.topology import NAMESPACE, SERVICES

MEMORY_LIMIT = 512 * 2**20
LEAK_PER_SECOND = 8 * 2**20
BASE_MEMORY = 96 * 2**20

log = logging.getLogger("opslab.shop")


class Monitor:
    def __init__(
        self,
        view: ClusterView,
        metrics: Metrics,
        arrival_rate: Callable[[str], float],
        api: client.ApiClient | None,
        *,
        namespace: str = NAMESPACE,
        logs: ServiceLogs | None = None,
    ) -> None:
        self.view = view
        self.metrics = metrics
        self.arrival_rate = arrival_rate
        self.core = client.CoreV1Api(api) if api is not None else None
        self.namespace = namespace
        self.state: dict[str, str] = {}
        self.faults_seen: set[str] = set()
        self.leak_started: dict[str, float] = {}
        self.logs = logs
        self._stop = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._loop, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.tick(time.monotonic())
            except Exception as exc:
                log.warning("Monitor tick failed: %s", exc)

    def tick(self, now: float) -> None:
        if self.logs is not None:
            self.logs.flush()
        for name, spec in SERVICES.items():
            capacity = self.view.capacity(name)
            rho = model.utilisation(spec, capacity, self.arrival_rate(name))
            self.metrics.ready.labels(name).set(capacity.ready)
            pods = self.view.pods(name)
            self.metrics.not_ready.labels(name).set(sum(1 for p in pods if not p.ready))
            self.metrics.restarts.labels(name).set(sum(p.restarts for p in pods))
            self.metrics.saturation.labels(name).set(min(rho, 10.0) if not math.isinf(rho) else 10.0)
            state = "unavailable" if capacity.ready == 0 else ("saturated" if rho >= 1.0 else "ok")
            previous = self.state.get(name)
            self.state[name] = state
            if previous is not None and previous != state:
                self._transition(name, previous, state, rho)
            self._memory(name, pods, now)
        active = {f.name: f for f in self.view.faults() if not self.view.silent(f.name)}
        for name in set(active) - self.faults_seen:
            fault = active[name]
            self.event(
                fault.target or "gateway", "FaultInjected", f"Fault {name} is active: {fault.summary}.", "Warning"
            )
        for name in self.faults_seen - set(active):
            self.event("gateway", "FaultRemoved", f"Fault {name} was removed.", "Normal")
        self.faults_seen = set(active)

    def _memory(self, service: str, pods: list[PodInfo], now: float) -> None:
        """Simulated working set: flat, or climbing towards the limit under a memory-leak fault."""
        for pod in pods:
            if pod.fault == FaultType.MEMORY_LEAK.value and pod.ready:
                started = self.leak_started.setdefault(pod.name, now)
                value = min(BASE_MEMORY + LEAK_PER_SECOND * (now - started), MEMORY_LIMIT)
            else:
                self.leak_started.pop(pod.name, None)
                value = BASE_MEMORY
            self.metrics.memory.labels(service, pod.name).set(value)
        known = {p.name for p in pods}
        for labels in list(self.metrics.memory._metrics):  # drop series of pods that are gone
            if labels[0] == service and labels[1] not in known:
                self.metrics.memory.remove(*labels)

    def _transition(self, service: str, old: str, new: str, rho: float) -> None:
        if new == "unavailable":
            self.event(
                service, "ServiceUnavailable", f"{service} has no ready pods; its requests fail with 503.", "Warning"
            )
        elif new == "saturated":
            self.event(
                service,
                "ServiceSaturated",
                f"{service} is saturated (load per server {rho:.2f}); it sheds requests.",
                "Warning",
            )
        elif old in ("unavailable", "saturated"):
            self.event(service, "ServiceRecovered", f"{service} is serving normally again (was {old}).", "Normal")

    def event(self, service: str, reason: str, message: str, kind: str) -> None:
        log.info("[%s/%s] %s", self.namespace, service, message)
        if self.core is None:
            return
        now = datetime.datetime.now(datetime.UTC)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{service}.", namespace=self.namespace),
            involved_object=client.V1ObjectReference(
                api_version="apps/v1", kind="Deployment", name=service, namespace=self.namespace
            ),
            reason=reason,
            message=message,
            type=kind,
            source=client.V1EventSource(component="opslab-shop"),
            first_timestamp=now,
            last_timestamp=now,
            count=1,
        )
        try:
            self.core.create_namespaced_event(self.namespace, event)
        except ApiException as exc:
            log.warning("Could not record event %s: %s", reason, exc.reason)
