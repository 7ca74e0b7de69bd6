"""Lab 2 checks: the learner's kopf operator, run against the real API server."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from support import GROUP, PLURAL, VERSION, Operator, app, conditions

from opslab.grading.fixtures import LearnerError, eventually
from opslab.grading.rubric import check

REGISTRY = "selfhealingapp-registry"


def get(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    return custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)


def create(custom: client.CustomObjectsApi, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    return custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)


def ready(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any] | None:
    obj = get(custom, namespace, name)
    status = obj.get("status") or {}
    if conditions(obj).get("Ready") == "True" and status.get("observedGeneration") == obj["metadata"]["generation"]:
        return obj
    return None


@pytest.fixture(scope="module")
def web(
    operator: Operator, custom: client.CustomObjectsApi, kube_api: client.ApiClient, lab_namespace: str
) -> dict[str, Any]:
    """The app `web` (3 replicas), created once; the checks that use it need its Deployment."""
    created = create(custom, lab_namespace, app("web", replicas=3))
    apps = client.AppsV1Api(kube_api)
    if not eventually(lambda: apps.read_namespaced_deployment("web", lab_namespace), 30):
        operator.assert_alive()
        raise LearnerError("no Deployment named web appeared within 30 s of creating the app web (task 2)")
    return created


@check(
    points=1,
    section="The API",
    hint="crd.yaml must define selfhealingapps.labs.opslab.dev (v1alpha1, namespaced, with a status subresource).",
)
def test_the_crd_is_accepted(crd: dict[str, Any]) -> None:
    """the SelfHealingApp CRD is accepted and Established"""
    versions = crd["spec"]["versions"]
    assert any(v.get("subresources", {}).get("status") is not None for v in versions), (
        "the CRD has no status subresource"
    )


@check(
    points=2,
    section="The API",
    hint="Validate in the CRD's openAPIV3Schema (required image, replicas 1..20), or report a bad spec in a Degraded condition.",
)
def test_invalid_specs_are_rejected_or_reported(
    operator: Operator, custom: client.CustomObjectsApi, lab_namespace: str
) -> None:
    """a bad spec is refused by the schema or reported as Degraded"""
    bad = [app("bad-replicas", replicas=-3), {**app("no-image"), "spec": {"replicas": 2}}]
    for body in bad:
        name = body["metadata"]["name"]
        try:
            create(custom, lab_namespace, body)
        except ApiException as exc:
            assert exc.status == 422, f"{name}: the API answered {exc.status}, not 422"
            continue
        degraded = eventually(lambda n=name: conditions(get(custom, lab_namespace, n)).get("Degraded") == "True", 20)
        assert degraded, f"{name} was accepted and never reported Degraded=True"


@check(
    points=3,
    section="Reconcile",
    hint="Create the Deployment, Service and PodDisruptionBudget with metadata.ownerReferences pointing at the app (controller: true).",
)
def test_an_app_gets_its_deployment_service_and_budget(
    operator: Operator, web: dict[str, Any], kube_api: client.ApiClient, lab_namespace: str
) -> None:
    """an app gets a Deployment, a Service and a PodDisruptionBudget, all owned by it"""
    apps, core, policy = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api), client.PolicyV1Api(kube_api)
    uid = web["metadata"]["uid"]
    readers = {
        "Deployment": lambda: apps.read_namespaced_deployment("web", lab_namespace),
        "Service": lambda: core.read_namespaced_service("web", lab_namespace),
        "PodDisruptionBudget": lambda: policy.read_namespaced_pod_disruption_budget("web", lab_namespace),
    }
    for kind, read in readers.items():
        obj = eventually(read, 30)
        if obj is None:
            operator.assert_alive()
            raise AssertionError(f"no {kind} named web appeared within 30 s")
        refs = [r for r in obj.metadata.owner_references or [] if r.uid == uid]
        assert refs and refs[0].controller, f"the {kind} has no controller ownerReference to the app"
    deployment = readers["Deployment"]()
    assert deployment.spec.replicas == 3, f"the Deployment has {deployment.spec.replicas} replicas, the app asks for 3"
    assert deployment.spec.template.spec.containers[0].image == "opslab/web:1.0.0"


@check(
    points=3,
    section="Status",
    hint="Set status.conditions (Ready, Progressing, Degraded) and status.observedGeneration = metadata.generation.",
)
def test_status_reports_ready_with_the_observed_generation(
    operator: Operator, web: dict[str, Any], custom: client.CustomObjectsApi, lab_namespace: str
) -> None:
    """status says Ready with the observed generation, and all three conditions"""
    obj = eventually(lambda: ready(custom, lab_namespace, "web"), 45)
    if not obj:
        operator.assert_alive()
        last = get(custom, lab_namespace, "web").get("status")
        raise AssertionError(f"web never reported Ready=True with observedGeneration = generation (status: {last})")
    assert {"Ready", "Progressing", "Degraded"} <= set(conditions(obj)), f"conditions: {conditions(obj)}"


@check(
    points=2,
    section="Reconcile",
    timeout=120,
    hint="React to spec updates: change the Deployment, and report the new generation once it is rolled out.",
)
def test_a_spec_change_is_rolled_out(
    operator: Operator,
    web: dict[str, Any],
    custom: client.CustomObjectsApi,
    kube_api: client.ApiClient,
    lab_namespace: str,
) -> None:
    """a spec change (image, replicas) reaches the Deployment and the status"""
    eventually(lambda: ready(custom, lab_namespace, "web"), 30)
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, lab_namespace, PLURAL, "web", {"spec": {"replicas": 4, "image": "opslab/web:1.1.0"}}
    )
    apps = client.AppsV1Api(kube_api)

    def rolled() -> bool:
        d = apps.read_namespaced_deployment("web", lab_namespace)
        return d.spec.replicas == 4 and d.spec.template.spec.containers[0].image == "opslab/web:1.1.0"

    assert eventually(rolled, 30), "the Deployment did not follow the new spec within 30 s"
    assert eventually(lambda: ready(custom, lab_namespace, "web"), 45), (
        "the app did not report Ready for its new generation"
    )


@check(
    points=3,
    section="Reconcile",
    timeout=90,
    hint="Compare before you write: when the objects already match the spec, patch nothing (and keep lastTransitionTime unless a condition's status changes).",
)
def test_reconcile_writes_nothing_when_nothing_changed(
    operator: Operator,
    web: dict[str, Any],
    custom: client.CustomObjectsApi,
    kube_api: client.ApiClient,
    lab_namespace: str,
) -> None:
    """once settled, a reconcile changes nothing (resourceVersions stay the same)"""
    assert eventually(lambda: ready(custom, lab_namespace, "web"), 45), "web never settled (Ready)"
    time.sleep(3)
    apps, core, policy = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api), client.PolicyV1Api(kube_api)

    def versions() -> dict[str, str]:
        return {
            "SelfHealingApp": get(custom, lab_namespace, "web")["metadata"]["resourceVersion"],
            "Deployment": apps.read_namespaced_deployment("web", lab_namespace).metadata.resource_version,
            "Service": core.read_namespaced_service("web", lab_namespace).metadata.resource_version,
            "PodDisruptionBudget": policy.read_namespaced_pod_disruption_budget(
                "web", lab_namespace
            ).metadata.resource_version,
        }

    before = versions()
    time.sleep(15)
    after = versions()
    changed = [kind for kind in before if before[kind] != after[kind]]
    operator.assert_alive()
    assert not changed, f"with nothing to do, these were written anyway: {', '.join(changed)}"


@check(
    points=3,
    section="Reconcile",
    timeout=90,
    hint="Watch for drift: a timer (or a watch on the owned Deployments) that re-applies the spec fixes hand edits.",
)
def test_a_hand_edit_is_reverted(
    operator: Operator,
    web: dict[str, Any],
    custom: client.CustomObjectsApi,
    kube_api: client.ApiClient,
    lab_namespace: str,
) -> None:
    """a hand edit of the Deployment is reverted"""
    apps = client.AppsV1Api(kube_api)
    wanted = eventually(lambda: apps.read_namespaced_deployment("web", lab_namespace).spec.replicas, 10)
    # Edit only once the app has settled: while its first reconcile is still retrying (waiting for
    # the rollout), that retry would undo the edit and hide a missing drift correction.
    eventually(lambda: ready(custom, lab_namespace, "web"), 20)
    apps.patch_namespaced_deployment("web", lab_namespace, {"spec": {"replicas": 1}})
    reverted = eventually(lambda: apps.read_namespaced_deployment("web", lab_namespace).spec.replicas == wanted, 30)
    operator.assert_alive()
    assert reverted, f"the Deployment was scaled to 1 by hand and stayed there (the app asks for {wanted})"


@check(
    points=2,
    section="Errors",
    timeout=120,
    hint="When a child cannot be created (a Service of the same name belongs to someone else), set Degraded=True and retry with a delay (kopf.TemporaryError); recover once the conflict is gone.",
)
def test_errors_are_reported_and_retried(
    operator: Operator, custom: client.CustomObjectsApi, kube_api: client.ApiClient, lab_namespace: str
) -> None:
    """a conflict is reported as Degraded and retried until it resolves"""
    core = client.CoreV1Api(kube_api)
    squatter = client.V1Service(
        metadata=client.V1ObjectMeta(name="api"), spec=client.V1ServiceSpec(ports=[client.V1ServicePort(port=9999)])
    )
    core.create_namespaced_service(lab_namespace, squatter)
    create(custom, lab_namespace, app("api", replicas=2))
    degraded = eventually(lambda: conditions(get(custom, lab_namespace, "api")).get("Degraded") == "True", 30)
    if not degraded:
        operator.assert_alive()
        raise AssertionError("with a foreign Service named api in the way, the app never reported Degraded=True")
    core.delete_namespaced_service("api", lab_namespace)
    recovered = eventually(lambda: ready(custom, lab_namespace, "api"), 60)
    assert recovered, "after the conflict was removed, the app did not become Ready within 60 s (no retry?)"
    service = core.read_namespaced_service("api", lab_namespace)
    assert any(r.kind == "SelfHealingApp" for r in service.metadata.owner_references or []), (
        "the new Service is not owned by the app"
    )


@check(
    points=3,
    section="Deletion",
    timeout=90,
    hint="Register each app in the ConfigMap selfhealingapp-registry; in a deletion handler (kopf adds a finalizer for it) remove the entry.",
)
def test_deletion_runs_the_finalizer(
    operator: Operator, custom: client.CustomObjectsApi, kube_api: client.ApiClient, lab_namespace: str
) -> None:
    """deleting an app runs its finalizer: the registry entry goes, then the app"""
    core = client.CoreV1Api(kube_api)
    create(custom, lab_namespace, app("temp", replicas=1))
    registered = eventually(lambda: "temp" in (core.read_namespaced_config_map(REGISTRY, lab_namespace).data or {}), 30)
    if not registered:
        operator.assert_alive()
        raise AssertionError(f"temp was never registered in the ConfigMap {REGISTRY}")
    finalizers = get(custom, lab_namespace, "temp")["metadata"].get("finalizers") or []
    assert finalizers, "the app carries no finalizer, so nothing can clean up before it disappears"
    custom.delete_namespaced_custom_object(GROUP, VERSION, lab_namespace, PLURAL, "temp")

    def gone() -> bool:
        try:
            get(custom, lab_namespace, "temp")
        except ApiException as exc:
            return exc.status == 404
        return False

    if not eventually(gone, 30):
        operator.assert_alive()
        raise LearnerError("temp was deleted but is still there after 30 s: the finalizer is never removed")
    data = core.read_namespaced_config_map(REGISTRY, lab_namespace).data or {}
    assert "temp" not in data, "temp is gone but its registry entry is still there: the finalizer did not clean up"
