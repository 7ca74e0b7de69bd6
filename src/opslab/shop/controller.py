"""The fault controller: applies the faults the simulator cannot apply itself, and reverts them.

For each Fault object it adds a finalizer, applies the effect, and records it in status; when
the Fault is deleted it reverts the effect and removes the finalizer, so a deleted fault never
leaves anything injected. Effects are idempotent, so the controller simply reconciles every
Fault every couple of seconds and whenever something changes.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

from kubernetes import client
from kubernetes.client.rest import ApiException

from opslab.shop import faults as faults_module
from opslab.shop.faults import POD_TEMPLATE, SIMULATED, Fault, FaultType, InvalidFault
from opslab.shop.topology import NAMESPACE

FINALIZER = "opslab.dev/fault-controller"
ORIGINAL = "opslab.dev/original"
DRIFT_QUOTA = "opslab-quota"
DRIFT_PODS = "7"
PROCESS = {FaultType.KAFKA_DOWN: "kafka", FaultType.REDIS_DOWN: "redis"}
"""Faults that stop a platform process (through the supervisor; embedded profile only)."""

log = logging.getLogger("opslab.shop")


class ProcessControl(Protocol):
    """Stops and starts platform processes (the supervisor); injected so tests can record calls."""

    def stop(self, name: str) -> None: ...

    def start(self, name: str) -> None: ...


class FaultController:
    def __init__(self, api: client.ApiClient, processes: ProcessControl | None, namespace: str = NAMESPACE) -> None:
        self.api = api
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.processes = processes
        self.namespace = namespace
        self._wake = threading.Event()
        self._stop = threading.Event()

    def poke(self) -> None:
        self._wake.set()

    def start(self) -> None:
        threading.Thread(target=self._loop, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.reconcile_all()
            except Exception as exc:
                log.warning("Fault reconciliation failed: %s", exc)
            self._wake.wait(2.0)
            self._wake.clear()

    # ------------------------------------------------------------------ reconcile

    def _objects(self) -> list[dict[str, Any]]:
        try:
            listing: Any = self.custom.list_namespaced_custom_object(
                faults_module.GROUP, faults_module.VERSION, self.namespace, faults_module.PLURAL
            )
        except ApiException as exc:
            if exc.status == 404:
                return []
            raise
        return list(listing["items"])

    def reconcile_all(self) -> None:
        for obj in self._objects():
            self.reconcile(obj)

    def reconcile(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        name = meta["name"]
        try:
            fault = faults_module.parse(name, obj.get("spec") or {})
        except InvalidFault as exc:
            if meta.get("deletionTimestamp"):
                self._set_finalizer(obj, present=False)
            else:
                self._status(name, "Invalid", str(exc))
            return
        if meta.get("deletionTimestamp"):
            if FINALIZER in (meta.get("finalizers") or []):
                self.revert(fault, obj)
                self._set_finalizer(obj, present=False)
                log.info("[%s/%s] Reverted %s.", self.namespace, name, fault.summary)
            return
        if FINALIZER not in (meta.get("finalizers") or []) and not self._set_finalizer(obj, present=True):
            return  # not confirmed (a conflict): applying now could leave an effect nobody reverts
        if fault.type in PROCESS and self.processes is None:
            self._status(
                name, "Invalid", f"{fault.type.value} needs the embedded profile (it stops a platform process)"
            )
            return
        if fault.type not in SIMULATED:
            self.apply(fault, obj)
        if (obj.get("status") or {}).get("phase") != "Active":
            self._status(name, "Active", f"{fault.summary}: {faults_module.DESCRIPTIONS[fault.type]}")
            log.info("[%s/%s] Applied %s.", self.namespace, name, fault.summary)

    # ------------------------------------------------------------------ effects

    def apply(self, fault: Fault, obj: dict[str, Any]) -> None:
        if fault.type in POD_TEMPLATE:
            self._carry(fault, obj)
        elif fault.type is FaultType.BAD_ROLLOUT:
            self._bad_image(fault, obj)
        elif fault.type is FaultType.NODE_NOT_READY:
            down = faults_module.carrier("node-not-ready")
            self.core.patch_node(fault.node, {"metadata": {"labels": {faults_module.FAULT_LABEL: down}}})
        elif fault.type in PROCESS and self.processes is not None:
            self.processes.stop(PROCESS[fault.type])
        elif fault.type is FaultType.TERRAFORM_DRIFT:
            self._drift(obj)

    def revert(self, fault: Fault, obj: dict[str, Any]) -> None:
        original = (obj["metadata"].get("annotations") or {}).get(ORIGINAL, "")
        if fault.type in POD_TEMPLATE:
            self._template_label(fault.target, original or None)  # the healthy build the pods ran before
        elif fault.type is FaultType.BAD_ROLLOUT and original:
            self._patch_image(fault.target, original)
        elif fault.type is FaultType.NODE_NOT_READY:
            try:
                self.core.patch_node(fault.node, {"metadata": {"labels": {faults_module.FAULT_LABEL: None}}})
            except ApiException as exc:
                if exc.status != 404:
                    raise
        elif fault.type in PROCESS and self.processes is not None:
            self.processes.start(PROCESS[fault.type])
        elif fault.type is FaultType.TERRAFORM_DRIFT and original:
            self.core.patch_namespaced_resource_quota(
                DRIFT_QUOTA, self.namespace, {"spec": {"hard": {"pods": original}}}
            )

    def _carry(self, fault: Fault, obj: dict[str, Any]) -> None:
        """Roll the target out as a build that carries the fault, keeping the build it replaces."""
        if ORIGINAL not in (obj["metadata"].get("annotations") or {}):
            build = self._build_label(fault.target) or ""
            self._annotate(obj, "" if faults_module.carried(build) else build)
        self._template_label(fault.target, faults_module.carrier(fault.type.value))

    def _build_label(self, deployment: str) -> str | None:
        current: Any = self.apps.read_namespaced_deployment(deployment, self.namespace)
        return (current.spec.template.metadata.labels or {}).get(faults_module.FAULT_LABEL)

    def _template_label(self, deployment: str, value: str | None) -> None:
        current: Any = self.apps.read_namespaced_deployment(deployment, self.namespace)
        labels = current.spec.template.metadata.labels or {}
        if labels.get(faults_module.FAULT_LABEL) == value:
            return
        patch = {"spec": {"template": {"metadata": {"labels": {faults_module.FAULT_LABEL: value}}}}}
        self.apps.patch_namespaced_deployment(deployment, self.namespace, patch)

    def _container_image(self, deployment: str) -> tuple[str, str]:
        current: Any = self.apps.read_namespaced_deployment(deployment, self.namespace)
        container = current.spec.template.spec.containers[0]
        return str(container.name), str(container.image)

    def _patch_image(self, deployment: str, image: str) -> None:
        name, current = self._container_image(deployment)
        if current != image:
            patch = {"spec": {"template": {"spec": {"containers": [{"name": name, "image": image}]}}}}
            self.apps.patch_namespaced_deployment(deployment, self.namespace, patch)

    def _bad_image(self, fault: Fault, obj: dict[str, Any]) -> None:
        _, image = self._container_image(fault.target)
        if not (obj["metadata"].get("annotations") or {}).get(ORIGINAL):
            self._annotate(obj, image)
        repository = image.rsplit(":", 1)[0]
        self._patch_image(fault.target, f"{repository}:{fault.image_tag}")

    def _drift(self, obj: dict[str, Any]) -> None:
        quota: Any = self.core.read_namespaced_resource_quota(DRIFT_QUOTA, self.namespace)
        current = quota.spec.hard.get("pods", "")
        if not (obj["metadata"].get("annotations") or {}).get(ORIGINAL):
            self._annotate(obj, current)
        if current != DRIFT_PODS:
            self.core.patch_namespaced_resource_quota(
                DRIFT_QUOTA, self.namespace, {"spec": {"hard": {"pods": DRIFT_PODS}}}
            )

    # ------------------------------------------------------------------ the Fault object

    def _patch_fault(self, name: str, body: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            faults_module.GROUP, faults_module.VERSION, self.namespace, faults_module.PLURAL, name, body
        )

    def _annotate(self, obj: dict[str, Any], original: str) -> None:
        obj["metadata"].setdefault("annotations", {})[ORIGINAL] = original
        self._patch_fault(obj["metadata"]["name"], {"metadata": {"annotations": {ORIGINAL: original}}})

    def _set_finalizer(self, obj: dict[str, Any], *, present: bool) -> bool:
        """Add or remove the finalizer; False if the object changed or vanished meanwhile."""
        finalizers = [f for f in obj["metadata"].get("finalizers") or [] if f != FINALIZER]
        if present:
            finalizers.append(FINALIZER)
        body = {"metadata": {"finalizers": finalizers, "resourceVersion": obj["metadata"]["resourceVersion"]}}
        try:
            self.custom.patch_namespaced_custom_object(
                faults_module.GROUP, faults_module.VERSION, self.namespace, faults_module.PLURAL,
                obj["metadata"]["name"], body,
            )  # fmt: skip
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise
            return False
        return True

    def _status(self, name: str, phase: str, message: str) -> None:
        body = {
            "status": {"phase": phase, "message": message, "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        }
        try:
            self.custom.patch_namespaced_custom_object_status(
                faults_module.GROUP, faults_module.VERSION, self.namespace, faults_module.PLURAL, name, body
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
