"""The SelfHealingApp operator (lab 2 reference solution), written with kopf.

For each SelfHealingApp it keeps a Deployment, a Service and a PodDisruptionBudget, owned by the
app, equal to what the spec asks; it reports Ready, Progressing and Degraded conditions with the
observed generation; it registers the app in the ConfigMap `selfhealingapp-registry` (in the app's
namespace, created by the operator) and removes it there when the app is deleted (a finalizer).

What wakes a reconcile: the app's own create/update/resume handlers, and any event of a child it
owns (kopf.on.event on Deployments, Services and budgets it manages), which is how a hand edit is
put back at once and how the rollout's progress reaches the app's status, without a timer.
Reconciling is idempotent: nothing is written when nothing differs.

Run:  kopf run shop_operator.py --standalone --namespace <ns>
"""

from __future__ import annotations

import contextlib
import datetime
import threading
from collections import defaultdict
from typing import Any

import kopf
from kubernetes import client, config
from kubernetes.client.rest import ApiException

GROUP, VERSION, PLURAL = "labs.opslab.dev", "v1alpha1", "selfhealingapps"
REGISTRY = "selfhealingapp-registry"
MANAGED_BY = {"app.kubernetes.io/managed-by": "selfhealingapp-operator"}
LOCKS: defaultdict[tuple[str, str], threading.Lock] = defaultdict(threading.Lock)
"""One reconcile of an app at a time (its handlers and its children's events run in threads)."""


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    config.load_kube_config()
    settings.persistence.finalizer = "labs.opslab.dev/registry"
    settings.posting.level = 40  # only errors become Kubernetes events
    settings.execution.max_workers = 4


def owner(app: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "SelfHealingApp", "name": app["metadata"]["name"],
        "uid": app["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True,
    }  # fmt: skip


def desired(app: dict[str, Any]) -> dict[str, dict[str, Any]]:
    name, spec = app["metadata"]["name"], app["spec"]
    labels = {"app.kubernetes.io/name": name, **MANAGED_BY}
    selector = {"app.kubernetes.io/name": name}
    replicas = int(spec.get("replicas", 2))
    port = int(spec.get("port", 8080))
    min_available = int((spec.get("disruptionBudget") or {}).get("minAvailable", max(replicas - 1, 0)))
    meta = {"name": name, "labels": labels, "ownerReferences": [owner(app)]}
    return {
        "deployment": {
            "metadata": meta,
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "app", "image": spec["image"],
                                             "ports": [{"containerPort": port, "protocol": "TCP"}]}]},
                },
            },
        },
        "service": {"metadata": meta, "spec": {"selector": selector,
                                               "ports": [{"port": port, "targetPort": port, "protocol": "TCP"}]}},
        "pdb": {"metadata": meta, "spec": {"minAvailable": min_available, "selector": {"matchLabels": selector}}},
    }  # fmt: skip


def owned_by(obj: Any, app: dict[str, Any]) -> bool:
    return any(ref.uid == app["metadata"]["uid"] and ref.controller for ref in obj.metadata.owner_references or [])


def ensure(
    kind: str, read: Any, create: Any, patch: Any, *, want: dict[str, Any], app: dict[str, Any], differs: Any
) -> bool:
    """Create or correct one child; True if something was written."""
    name, namespace = app["metadata"]["name"], app["metadata"]["namespace"]
    try:
        current = read(name, namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise kopf.TemporaryError(f"cannot read {kind} {name}: {exc.reason}", delay=5) from exc
        try:
            create(namespace, want)
        except ApiException as error:
            if error.status == 409:  # created meanwhile (another event): look again later
                raise kopf.TemporaryError(f"{kind} {name} appeared meanwhile", delay=1) from error
            raise
        return True
    if not owned_by(current, app):
        raise kopf.TemporaryError(f"a {kind} named {name} exists and is not this app's; remove or rename it", delay=5)
    if differs(current, want):
        # A merge patch replaces lists (containers, ports) whole; a strategic merge would add the
        # new port beside the old one.
        patch(name, namespace, want, _content_type="application/merge-patch+json")
        return True
    return False


def deployment_differs(current: Any, want: dict[str, Any]) -> bool:
    container = current.spec.template.spec.containers[0]
    wanted = want["spec"]["template"]["spec"]["containers"][0]
    ports = [p.container_port for p in container.ports or []]
    return (
        current.spec.replicas != want["spec"]["replicas"]
        or container.image != wanted["image"]
        or ports != [wanted["ports"][0]["containerPort"]]
    )


def service_differs(current: Any, want: dict[str, Any]) -> bool:
    ports = [(p.port, p.target_port) for p in current.spec.ports or []]
    wanted = want["spec"]["ports"][0]
    return ports != [(wanted["port"], wanted["targetPort"])] or current.spec.selector != want["spec"]["selector"]


def pdb_differs(current: Any, want: dict[str, Any]) -> bool:
    return current.spec.min_available != want["spec"]["minAvailable"]


def condition(kind: str, status: bool, reason: str, message: str, previous: list[dict[str, Any]]) -> dict[str, Any]:
    old = next((c for c in previous if c.get("type") == kind), {})
    value = "True" if status else "False"
    since = old.get("lastTransitionTime") if old.get("status") == value else None
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"type": kind, "status": value, "reason": reason, "message": message, "lastTransitionTime": since or now}


def reconcile(namespace: str, name: str) -> None:
    """Make the world match the app ``namespace/name`` as it is now; report how it stands."""
    with LOCKS[(namespace, name)]:
        custom = client.CustomObjectsApi()
        try:
            app = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        if app["metadata"].get("deletionTimestamp"):
            return
        _reconcile(app)


def _reconcile(app: dict[str, Any]) -> None:
    apps, core, policy = client.AppsV1Api(), client.CoreV1Api(), client.PolicyV1Api()
    want = desired(app)
    previous = (app.get("status") or {}).get("conditions") or []
    try:
        ensure(
            "Deployment",
            apps.read_namespaced_deployment,
            apps.create_namespaced_deployment,
            apps.patch_namespaced_deployment,
            want=want["deployment"],
            app=app,
            differs=deployment_differs,
        )
        ensure(
            "Service",
            core.read_namespaced_service,
            core.create_namespaced_service,
            core.patch_namespaced_service,
            want=want["service"],
            app=app,
            differs=service_differs,
        )
        ensure("PodDisruptionBudget", policy.read_namespaced_pod_disruption_budget,
               policy.create_namespaced_pod_disruption_budget, policy.patch_namespaced_pod_disruption_budget,
               want=want["pdb"], app=app, differs=pdb_differs)  # fmt: skip
        register(app)
    except kopf.TemporaryError as error:
        write_status(app, [
            condition("Ready", False, "ReconcileFailed", str(error), previous),
            condition("Progressing", False, "ReconcileFailed", str(error), previous),
            condition("Degraded", True, "ReconcileFailed", str(error), previous),
        ])  # fmt: skip
        raise
    deployment = apps.read_namespaced_deployment(app["metadata"]["name"], app["metadata"]["namespace"])
    wanted = want["deployment"]["spec"]["replicas"]
    available = deployment.status.available_replicas or 0
    updated = deployment.status.updated_replicas or 0
    # Ready only once the Deployment controller has seen the current spec and every replica runs
    # it: right after a change, the old replicas' availability says nothing about the new ones.
    seen = (deployment.status.observed_generation or 0) >= deployment.metadata.generation
    settled = seen and available >= wanted and updated >= wanted
    replicas = f"{available}/{wanted} replicas available, {updated} updated"
    write_status(app, [
        condition("Ready", settled, "Available" if settled else "RollingOut", replicas, previous),
        condition("Progressing", not settled, "Complete" if settled else "RollingOut", replicas, previous),
        condition("Degraded", False, "AsExpected", "the app's objects match its spec", previous),
    ])  # fmt: skip


def write_status(app: dict[str, Any], conditions: list[dict[str, Any]]) -> None:
    """Patch status only if it would change: a reconcile that finds nothing to do writes nothing."""
    status = app.get("status") or {}
    generation = app["metadata"].get("generation")
    if status.get("conditions") == conditions and status.get("observedGeneration") == generation:
        return
    body = {"status": {"conditions": conditions, "observedGeneration": generation}}
    meta = app["metadata"]
    client.CustomObjectsApi().patch_namespaced_custom_object_status(
        GROUP, VERSION, meta["namespace"], PLURAL, meta["name"], body
    )


def register(app: dict[str, Any]) -> None:
    """Record the app and its image in the registry ConfigMap of its namespace (created if missing)."""
    core = client.CoreV1Api()
    namespace, name, image = app["metadata"]["namespace"], app["metadata"]["name"], app["spec"]["image"]
    try:
        registry = core.read_namespaced_config_map(REGISTRY, namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise
        core.create_namespaced_config_map(namespace, {"metadata": {"name": REGISTRY, "labels": MANAGED_BY},
                                                      "data": {name: image}})  # fmt: skip
        return
    if (registry.data or {}).get(name) != image:
        core.patch_namespaced_config_map(REGISTRY, namespace, {"data": {name: image}})


@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
@kopf.on.resume(GROUP, VERSION, PLURAL)
def on_change(namespace: str, name: str, **_: Any) -> None:
    """The app appeared or its spec changed: reconcile it (kopf retries a TemporaryError)."""
    reconcile(namespace, name)


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED_BY)
@kopf.on.event("", "v1", "services", labels=MANAGED_BY)
@kopf.on.event("policy", "v1", "poddisruptionbudgets", labels=MANAGED_BY)
def on_child_event(body: kopf.Body, namespace: str, **_: Any) -> None:
    """A child changed (a hand edit, a rollout's progress, a deletion): reconcile its owner."""
    for ref in body["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == "SelfHealingApp" and ref.get("controller"):
            # a TemporaryError is reported in the app's status; the app's own handler retries it
            with contextlib.suppress(kopf.TemporaryError):
                reconcile(namespace, ref["name"])


@kopf.on.delete(GROUP, VERSION, PLURAL)
def unregister(namespace: str, name: str, **_: Any) -> None:
    """The finalizer's work: remove the app from the registry (its owned objects are garbage-collected).

    It takes the app's lock: a reconcile that read the app just before its deletion must not
    register it again after the entry is gone."""
    with LOCKS[(namespace, name)]:
        try:
            client.CoreV1Api().patch_namespaced_config_map(REGISTRY, namespace, {"data": {name: None}})
        except ApiException as exc:
            if exc.status != 404:
                raise kopf.TemporaryError(f"cannot update the registry: {exc.reason}", delay=3) from exc
