"""The live view of the cluster the simulator works from: ready pods per service, and faults.

Two background threads list and then watch the shop's pods and Fault objects, so the model
always uses the current capacity (a killed pod, a NotReady node or a scaled Deployment shows up
within a second or so) without querying the API server on the request path.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from opslab.shop import faults as faults_module
from opslab.shop.faults import Fault, InvalidFault
from opslab.shop.model import REFERENCE_CPU, Capacity
from opslab.shop.topology import NAMESPACE, SERVICE_LABEL

log = logging.getLogger("opslab.shop")
BAD_TAG_SUFFIX = "-bad"
NO_CAPACITY = Capacity(ready=0)


@dataclass(frozen=True)
class PodInfo:
    name: str
    service: str
    node: str
    ready: bool
    image: str
    cpu_limit: float
    fault: str
    restarts: int


def parse_cpu(quantity: str | None) -> float:
    """Kubernetes CPU quantity ("500m", "1", "0.25") in cores; the reference when unset."""
    if not quantity:
        return REFERENCE_CPU
    text = str(quantity)
    if text.endswith("m"):
        return float(text[:-1]) / 1000.0
    return float(text)


def pod_info(pod: Any) -> PodInfo | None:
    """The fields of a pod object (a dict, as watched) that the simulator needs."""
    meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status", {}) or {}
    service = (meta.get("labels") or {}).get(SERVICE_LABEL)
    if not service or meta.get("deletionTimestamp"):
        return None
    conditions = status.get("conditions") or []
    ready = status.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in conditions
    )
    containers = spec.get("containers") or [{}]
    limits = (containers[0].get("resources") or {}).get("limits") or {}
    restarts = sum(c.get("restartCount", 0) for c in status.get("containerStatuses") or [])
    return PodInfo(
        name=meta.get("name", ""),
        service=service,
        node=spec.get("nodeName") or "",
        ready=ready,
        image=containers[0].get("image", ""),
        cpu_limit=parse_cpu(limits.get("cpu")),
        fault=faults_module.carried((meta.get("labels") or {}).get(faults_module.FAULT_LABEL, "")),
        restarts=restarts,
    )


class ClusterView:
    """Thread-safe snapshot of pods and faults, kept current by watches."""

    def __init__(self, api: client.ApiClient, namespace: str = NAMESPACE) -> None:
        self.api = api
        self.namespace = namespace
        self._lock = threading.Lock()
        self._pods: dict[str, PodInfo] = {}
        self._faults: dict[str, Fault] = {}
        self._fault_objects: dict[str, dict[str, Any]] = {}
        self._stop = threading.Event()
        self.synced = threading.Event()
        self._listeners: list[Callable[[], None]] = []
        self._capacity: dict[str, Capacity] = {}
        self._faults_tuple: tuple[Fault, ...] = ()
        self.version = 0
        """Increases on every change of pods or faults (callers cache derived values by it)."""

    # ------------------------------------------------------------------ reading

    def capacity(self, service: str) -> Capacity:
        """The service's capacity now (precomputed on every change: a dict lookup on the request path)."""
        return self._capacity.get(service, NO_CAPACITY)

    def _recompute(self) -> None:
        """Recompute capacities and the parsed faults; called with the lock held after a change."""
        by_service: dict[str, list[PodInfo]] = {}
        for pod in self._pods.values():
            if pod.ready:
                by_service.setdefault(pod.service, []).append(pod)
        self._capacity = {
            service: Capacity(
                ready=len(pods),
                cpu_limit=sum(p.cpu_limit for p in pods) / len(pods),
                bad_ready=sum(1 for p in pods if p.image.endswith(BAD_TAG_SUFFIX)),
            )
            for service, pods in by_service.items()
        }
        ready_images = {service: {p.image for p in pods} for service, pods in by_service.items()}
        self._faults_tuple = faults_module.in_effect(self._faults.values(), ready_images)
        self.version += 1

    def pods(self, service: str | None = None) -> list[PodInfo]:
        with self._lock:
            return [p for p in self._pods.values() if service is None or p.service == service]

    def faults(self) -> tuple[Fault, ...]:
        return self._faults_tuple

    def silent(self, name: str) -> bool:
        """Whether the Fault ``name`` belongs to an incident (nothing announces it)."""
        with self._lock:
            obj = self._fault_objects.get(name) or {}
        return faults_module.SILENT_LABEL in ((obj.get("metadata") or {}).get("labels") or {})

    def fault_objects(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._fault_objects.values())

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (from a watch thread) whenever pods or faults change."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in self._listeners:
            try:
                listener()
            except Exception:
                log.exception("A cluster-change listener failed.")

    # ------------------------------------------------------------------ watching

    def start(self) -> None:
        for target in (self._watch_pods, self._watch_faults):
            threading.Thread(target=self._forever, args=(target,), daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _forever(self, body: Callable[[], None]) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                body()
                delay = 0.5
            except Exception as exc:  # the API server restarting, a network blip, a 410 Gone
                log.warning("Watch %s interrupted (%s); relisting in %.1fs.", body.__name__, exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 10)

    def _watch_pods(self) -> None:
        core = client.CoreV1Api(self.api)
        listing: Any = core.list_namespaced_pod(self.namespace, _preload_content=False)
        data = json.loads(listing.data)
        with self._lock:
            self._pods = {}
            for item in data["items"]:
                info = pod_info(item)
                if info:
                    self._pods[info.name] = info
            self._recompute()
        self.synced.set()
        self._changed()
        version = data["metadata"]["resourceVersion"]
        stream = watch.Watch().stream(
            core.list_namespaced_pod,
            self.namespace,
            resource_version=version,
            timeout_seconds=120,
        )
        for event in stream:
            if self._stop.is_set():
                return
            obj = event["raw_object"]
            name = obj["metadata"]["name"]
            info = pod_info(obj)
            with self._lock:
                if event["type"] == "DELETED" or info is None:
                    self._pods.pop(name, None)
                else:
                    self._pods[name] = info
                self._recompute()
            self._changed()

    def _watch_faults(self) -> None:
        custom = client.CustomObjectsApi(self.api)
        args = (faults_module.GROUP, faults_module.VERSION, self.namespace, faults_module.PLURAL)
        try:
            listing: Any = custom.list_namespaced_custom_object(*args)
        except ApiException as exc:
            if exc.status == 404:  # the CRD is not installed (yet)
                time.sleep(2)
                return
            raise
        with self._lock:
            self._fault_objects = {o["metadata"]["name"]: o for o in listing["items"]}
            self._faults = self._parse_all()
            self._recompute()
        self._changed()
        stream = watch.Watch().stream(
            custom.list_namespaced_custom_object,
            *args,
            resource_version=listing["metadata"]["resourceVersion"],
            timeout_seconds=120,
        )
        for event in stream:
            if self._stop.is_set():
                return
            obj = event["object"]
            name = obj["metadata"]["name"]
            with self._lock:
                if event["type"] == "DELETED":
                    self._fault_objects.pop(name, None)
                else:
                    self._fault_objects[name] = obj
                self._faults = self._parse_all()
                self._recompute()
            self._changed()

    def _parse_all(self) -> dict[str, Fault]:
        parsed = {}
        for name, obj in self._fault_objects.items():
            if obj["metadata"].get("deletionTimestamp"):
                continue
            try:
                parsed[name] = faults_module.parse(name, obj.get("spec") or {})
            except InvalidFault as exc:
                log.warning("%s", exc)
        return parsed
