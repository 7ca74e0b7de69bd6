"""Chaos Toolkit activities of opslab (probes and actions named in scenario files).

They read the platform's endpoints from the environment the scenario runner sets
(OPSLAB_KUBECONFIG, OPSLAB_PROMETHEUS_URL, OPSLAB_ALERTMANAGER_URL), so a scenario file also runs
under plain `chaos run` after `source .opslab/env`.

Every fault a scenario injects is a Fault object labelled with the run's id, so the runner can
remove whatever a run left behind, even after Ctrl-C.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
from chaoslib.exceptions import ActivityFailed
from kubernetes import client
from kubernetes.client.rest import ApiException

from opslab.runtime import kube
from opslab.shop import faults as faults_module
from opslab.shop.topology import NAMESPACE

RUN_LABEL = "opslab.dev/run"


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ActivityFailed(f"{name} is not set: run scenarios with `opslab scenario run`, or `source .opslab/env`")
    return value


def _custom() -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube.api_client(Path(_env("OPSLAB_KUBECONFIG"))))


def prometheus_value(query: str) -> float | None:
    """The first sample of an instant PromQL query, or None if it returned nothing."""
    response = httpx.get(f"{_env('OPSLAB_PROMETHEUS_URL')}/api/v1/query", params={"query": query}, timeout=10)
    response.raise_for_status()
    result = response.json()["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def firing_alerts() -> list[dict[str, Any]]:
    """Alerts Alertmanager holds as active (not silenced, not inhibited)."""
    response = httpx.get(
        f"{_env('OPSLAB_ALERTMANAGER_URL')}/api/v2/alerts",
        params={"active": "true", "silenced": "false", "inhibited": "false"},
        timeout=10,
    )
    response.raise_for_status()
    return list(response.json())


# ---------------------------------------------------------------------- probes


def error_ratio_below(service: str = "gateway", threshold: float = 0.02, window: str = "25s") -> bool:
    """Whether ``service`` answers fewer than ``threshold`` of its requests with a 5xx (SLI window)."""
    value = prometheus_value(f'shop:sli_error_ratio:rate{window}{{service="{service}"}}')
    return value is not None and value < threshold


def slow_ratio_below(service: str = "gateway", threshold: float = 0.05, window: str = "25s") -> bool:
    """Whether fewer than ``threshold`` of ``service``'s requests take longer than 250 ms."""
    value = prometheus_value(f'shop:sli_slow_ratio:rate{window}{{service="{service}"}}')
    return value is not None and value < threshold


def _matches(found: dict[str, str], alert: str, labels: dict[str, str] | None) -> bool:
    return found.get("alertname") == alert and all(found.get(k) == v for k, v in (labels or {}).items())


def alert_not_firing(alert: str, labels: dict[str, str] | None = None) -> bool:
    """Whether no alert named ``alert`` (with ``labels``, if given) is active in Alertmanager."""
    return not any(_matches(a["labels"], alert, labels) for a in firing_alerts())


def shop_alerts_firing() -> list[str]:
    """Names of the active alerts other than Watchdog (the control scenario expects none)."""
    return sorted({a["labels"]["alertname"] for a in firing_alerts() if a["labels"].get("alertname") != "Watchdog"})


def wait_for_alert(alert: str, within: float = 120, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """Wait until ``alert`` (with ``labels``, if given) is active in Alertmanager; fail after ``within`` s."""
    deadline = time.monotonic() + within
    began = time.monotonic()
    while time.monotonic() < deadline:
        for active in firing_alerts():
            if _matches(active["labels"], alert, labels):
                return {"alert": alert, "labels": active["labels"], "seconds": round(time.monotonic() - began, 1)}
        time.sleep(2)
    raise ActivityFailed(f"{alert} did not fire within {within:.0f}s")


# ---------------------------------------------------------------------- actions


def inject_fault(name: str, type: str, target: str = "", node: str = "", **parameters: Any) -> dict[str, Any]:
    """Create a Fault object (validated first); returns its spec."""
    spec: dict[str, Any] = {"type": type}
    if target:
        spec["target"] = target
    if node:
        spec["node"] = node
    spec.update(parameters)
    try:
        faults_module.parse(name, spec)
    except faults_module.InvalidFault as exc:
        raise ActivityFailed(str(exc)) from None
    body = {
        "apiVersion": f"{faults_module.GROUP}/{faults_module.VERSION}",
        "kind": "Fault",
        "metadata": {"name": name, "labels": {RUN_LABEL: os.environ.get("OPSLAB_RUN_ID", "manual")}},
        "spec": spec,
    }
    _custom().create_namespaced_custom_object(
        faults_module.GROUP, faults_module.VERSION, NAMESPACE, faults_module.PLURAL, body
    )
    return spec


def remove_fault(name: str, wait: float = 60) -> bool:
    """Delete a Fault and wait until the fault controller has reverted it (the object is gone)."""
    custom = _custom()
    args = (faults_module.GROUP, faults_module.VERSION, NAMESPACE, faults_module.PLURAL)
    try:
        custom.delete_namespaced_custom_object(*args, name)
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            custom.get_namespaced_custom_object(*args, name)
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        time.sleep(1)
    raise ActivityFailed(f"Fault {name} was not reverted within {wait:.0f}s (is the shop running?)")


def remove_run_faults(run_id: str) -> list[str]:
    """Delete every Fault a run created (the safety net behind rollbacks)."""
    custom = _custom()
    listing: Any = custom.list_namespaced_custom_object(
        faults_module.GROUP,
        faults_module.VERSION,
        NAMESPACE,
        faults_module.PLURAL,
        label_selector=f"{RUN_LABEL}={run_id}",
    )
    names = [item["metadata"]["name"] for item in listing["items"]]
    for name in names:
        remove_fault(name)
    return names


def shop_replicas() -> dict[str, int]:
    """The replicas each shop Deployment asks for (taken before a run, to undo any scaling)."""
    apps = client.AppsV1Api(kube.api_client(Path(_env("OPSLAB_KUBECONFIG"))))
    deployments: Any = apps.list_namespaced_deployment(NAMESPACE)
    return {str(d.metadata.name): int(d.spec.replicas or 0) for d in deployments.items}


def restore_replicas(wanted: dict[str, int]) -> list[str]:
    """Scale back every shop Deployment whose replicas differ from ``wanted``; the names restored."""
    apps = client.AppsV1Api(kube.api_client(Path(_env("OPSLAB_KUBECONFIG"))))
    restored = []
    deployments: Any = apps.list_namespaced_deployment(NAMESPACE)
    for deployment in deployments.items:
        name = str(deployment.metadata.name)
        if name in wanted and int(deployment.spec.replicas or 0) != wanted[name]:
            apps.patch_namespaced_deployment_scale(name, NAMESPACE, {"spec": {"replicas": wanted[name]}})
            restored.append(f"{name} scaled back to {wanted[name]}")
    return restored
