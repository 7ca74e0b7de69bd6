"""The SelfHealingApp operator (lab 2 reference solution), written with kopf.

For each SelfHealingApp it keeps a Deployment, a Service and a PodDisruptionBudget, owned by the
app, equal to what the spec asks; it reports Ready, Progressing and Degraded conditions with the
observed generation; it registers the app in the ConfigMap `selfhealingapp-registry` and removes it
there when the app is deleted (a finalizer). Reconciling is idempotent: nothing is written when
nothing differs, so a hand edit (drift) is the only thing that triggers a write.

Run:  kopf run shop_operator.py --standalone --namespace <ns>
"""

from __future__ import annotations

import datetime
from typing import Any

import kopf
from kubernetes import client, config
from kubernetes.client.rest import ApiException

GROUP, VERSION, PLURAL = "labs.opslab.dev", "v1alpha1", "selfhealingapps"
REGISTRY = "selfhealingapp-registry"
MANAGED_BY = {"app.kubernetes.io/managed-by": "selfhealingapp-operator"}


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    config.load_kube_config()
    settings.persistence.finalizer = "labs.opslab.dev/registry"
    settings.posting.level = 40  # only errors become Kubernetes events
    settings.execution.max_workers = 4


def owner(body: kopf.Body) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "SelfHealingApp", "name": body["metadata"]["name"],
        "uid": body["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True,
    }  # fmt: skip


def desired(body: kopf.Body) -> dict[str, dict[str, Any]]:
    name, spec = body["metadata"]["name"], body["spec"]
    labels = {"app.kubernetes.io/name": name, **MANAGED_BY}
    selector = {"app.kubernetes.io/name": name}
    replicas = int(spec.get("replicas", 2))
    min_available = int((spec.get("disruptionBudget") or {}).get("minAvailable", max(replicas - 1, 0)))
    meta = {"name": name, "labels": labels, "ownerReferences": [owner(body)]}
    return {
        "deployment": {
            "metadata": meta,
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "app", "image": spec["image"],
                                             "ports": [{"containerPort": int(spec.get("port", 8080))}]}]},
                },
            },
        },
        "service": {"metadata": meta, "spec": {"selector": selector, "ports": [{"port": int(spec.get("port", 8080))}]}},
        "pdb": {"metadata": meta, "spec": {"minAvailable": min_available, "selector": {"matchLabels": selector}}},
    }  # fmt: skip


def owned_by(obj: Any, body: kopf.Body) -> bool:
    return any(ref.uid == body["metadata"]["uid"] for ref in obj.metadata.owner_references or [])


def ensure(kind: str, read: Any, create: Any, patch: Any, want: dict[str, Any], body: kopf.Body, differs: Any) -> bool:
    """Create or correct one child; True if something was written."""
    name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
    try:
        current = read(name, namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise kopf.TemporaryError(f"cannot read {kind} {name}: {exc.reason}", delay=5) from exc
        create(namespace, want)
        return True
    if not owned_by(current, body):
        raise kopf.TemporaryError(f"a {kind} named {name} exists and is not this app's; remove or rename it", delay=5)
    if differs(current, want):
        patch(name, namespace, want)
        return True
    return False


def deployment_differs(current: Any, want: dict[str, Any]) -> bool:
    container = current.spec.template.spec.containers[0]
    wanted = want["spec"]["template"]["spec"]["containers"][0]
    return current.spec.replicas != want["spec"]["replicas"] or container.image != wanted["image"]


def service_differs(current: Any, want: dict[str, Any]) -> bool:
    return current.spec.ports[0].port != want["spec"]["ports"][0]["port"] or current.spec.selector != want["spec"]["selector"]


def pdb_differs(current: Any, want: dict[str, Any]) -> bool:
    return current.spec.min_available != want["spec"]["minAvailable"]


def condition(kind: str, status: bool, reason: str, message: str, previous: list[dict[str, Any]]) -> dict[str, Any]:
    old = next((c for c in previous if c.get("type") == kind), {})
    value = "True" if status else "False"
    since = old.get("lastTransitionTime") if old.get("status") == value else None
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"type": kind, "status": value, "reason": reason, "message": message, "lastTransitionTime": since or now}


def reconcile(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    apps, core, policy = client.AppsV1Api(), client.CoreV1Api(), client.PolicyV1Api()
    want = desired(body)
    status = body.get("status") or {}
    conditions = status.get("conditions") or []
    try:
        ensure("Deployment", apps.read_namespaced_deployment, apps.create_namespaced_deployment,
               apps.patch_namespaced_deployment, want["deployment"], body, deployment_differs)
        ensure("Service", core.read_namespaced_service, core.create_namespaced_service,
               core.patch_namespaced_service, want["service"], body, service_differs)
        ensure("PodDisruptionBudget", policy.read_namespaced_pod_disruption_budget,
               policy.create_namespaced_pod_disruption_budget, policy.patch_namespaced_pod_disruption_budget,
               want["pdb"], body, pdb_differs)  # fmt: skip
        register(body)
    except kopf.TemporaryError as error:
        new = [
            condition("Ready", False, "ReconcileFailed", str(error), conditions),
            condition("Progressing", False, "ReconcileFailed", str(error), conditions),
            condition("Degraded", True, "ReconcileFailed", str(error), conditions),
        ]
        write_status(body, patch, new)
        raise
    deployment = apps.read_namespaced_deployment(body["metadata"]["name"], body["metadata"]["namespace"])
    wanted = want["deployment"]["spec"]["replicas"]
    ready = deployment.status.available_replicas or 0
    updated = deployment.status.updated_replicas or 0
    settled = ready >= wanted and updated >= wanted and (deployment.status.observed_generation or 0) >= deployment.metadata.generation
    new = [
        condition("Ready", settled, "Available" if settled else "Waiting", f"{ready}/{wanted} replicas available", conditions),
        condition("Progressing", not settled, "RollingOut" if not settled else "Complete", f"{updated}/{wanted} replicas updated", conditions),
        condition("Degraded", False, "AsExpected", "the app's objects match its spec", conditions),
    ]  # fmt: skip
    write_status(body, patch, new)
    if not settled:
        raise kopf.TemporaryError("waiting for the rollout to finish", delay=3)


def write_status(body: kopf.Body, patch: kopf.Patch, conditions: list[dict[str, Any]]) -> None:
    """Patch status only if it would change: a reconcile that finds nothing to do writes nothing."""
    status = body.get("status") or {}
    generation = body["metadata"].get("generation")
    if status.get("conditions") != conditions or status.get("observedGeneration") != generation:
        patch.status["conditions"] = conditions
        patch.status["observedGeneration"] = generation


def register(body: kopf.Body) -> None:
    core = client.CoreV1Api()
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    try:
        registry = core.read_namespaced_config_map(REGISTRY, namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise
        core.create_namespaced_config_map(namespace, {"metadata": {"name": REGISTRY}, "data": {name: body["spec"]["image"]}})
        return
    if (registry.data or {}).get(name) != body["spec"]["image"]:
        core.patch_namespaced_config_map(REGISTRY, namespace, {"data": {name: body["spec"]["image"]}})


@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
@kopf.on.resume(GROUP, VERSION, PLURAL)
def on_change(body: kopf.Body, patch: kopf.Patch, **kwargs: Any) -> None:
    reconcile(body, patch)


@kopf.timer(GROUP, VERSION, PLURAL, interval=3, initial_delay=3)
def correct_drift(body: kopf.Body, patch: kopf.Patch, **kwargs: Any) -> None:
    """Every few seconds: put back whatever was changed by hand (and nothing else)."""
    if not body["metadata"].get("deletionTimestamp"):
        reconcile(body, patch)


@kopf.on.delete(GROUP, VERSION, PLURAL)
def unregister(body: kopf.Body, **_: Any) -> None:
    """The finalizer's work: remove the app from the registry (its owned objects are garbage-collected)."""
    core = client.CoreV1Api()
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    try:
        core.patch_namespaced_config_map(REGISTRY, namespace, {"data": {name: None}})
    except ApiException as exc:
        if exc.status != 404:
            raise kopf.TemporaryError(f"cannot update the registry: {exc.reason}", delay=3) from exc
