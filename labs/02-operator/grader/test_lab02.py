"""Lab 2 checks: the learner's CRD on its own, then their operator against the real API server."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from support import GROUP, PLURAL, VERSION, Operator, app_body, conditions

from opslab.grading.fixtures import LearnerError, eventually, hold_pods, lift_hold
from opslab.grading.rubric import check

REGISTRY = "selfhealingapp-registry"
VALID = {"image": "opslab/web:1.0.0", "replicas": 3, "port": 8080, "slo": {"availability": 0.999},
         "disruptionBudget": {"minAvailable": 1}}  # fmt: skip


def get(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    return custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)


def create(custom: client.CustomObjectsApi, namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, app_body(name, spec))


def patch_spec(custom: client.CustomObjectsApi, namespace: str, name: str, spec: dict[str, Any]) -> None:
    custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, {"spec": spec})


def ready(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any] | None:
    """The app, if its status says Ready=True for its current generation."""
    obj = get(custom, namespace, name)
    status = obj.get("status") or {}
    if conditions(obj).get("Ready") == "True" and status.get("observedGeneration") == obj["metadata"]["generation"]:
        return obj
    return None


def settled(operator: Operator, custom: client.CustomObjectsApi, namespace: str, name: str, what: str) -> None:
    if not eventually(lambda: ready(custom, namespace, name), 45):
        operator.assert_alive()
        raise LearnerError(f"{what}: {name} never reported Ready=True for its generation (status: "
                           f"{get(custom, namespace, name).get('status')})")  # fmt: skip


def children(kube_api: client.ApiClient, namespace: str, name: str) -> dict[str, Callable[[], Any]]:
    apps, core, policy = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api), client.PolicyV1Api(kube_api)
    return {
        "Deployment": lambda: apps.read_namespaced_deployment(name, namespace),
        "Service": lambda: core.read_namespaced_service(name, namespace),
        "PodDisruptionBudget": lambda: policy.read_namespaced_pod_disruption_budget(name, namespace),
    }


def stays_unchanged(read: Callable[[], Any], *, quiet: float, limit: float) -> bool:
    """Wait until ``read()`` has returned the same value for ``quiet`` seconds (False after ``limit``)."""
    deadline = time.monotonic() + limit
    last, since = read(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        current = read()
        if current != last:
            last, since = current, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return True
    return False


def status_change(before: dict[str, Any], after: dict[str, Any]) -> str:
    """What differs between two versions of an app, for a message: e.g. ``Ready.lastTransitionTime``."""

    def flat(obj: dict[str, Any]) -> dict[str, Any]:
        status = dict(obj.get("status") or {})
        found = {f"{c.get('type')}.{k}": v for c in status.pop("conditions", None) or [] for k, v in c.items()}
        found.update({f"status.{k}": v for k, v in status.items()})
        meta = obj["metadata"]
        found.update({"metadata.annotations": meta.get("annotations"), "metadata.finalizers": meta.get("finalizers")})
        return found

    old, new = flat(before), flat(after)
    fields = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    return ", ".join(fields) + " changed" if fields else "rewritten unchanged"


def owned_state(obj: Any) -> Any:
    """What an operator writes on a child: its labels, annotations, owners and spec (not its status)."""
    meta = obj.metadata
    state = (meta.labels, meta.annotations, meta.owner_references, obj.spec)
    return client.ApiClient().sanitize_for_serialization(state)


def container_port(deployment: Any) -> int | None:
    ports = deployment.spec.template.spec.containers[0].ports or []
    return ports[0].container_port if ports else None


@pytest.fixture(scope="module")
def web(operator: Operator, custom: client.CustomObjectsApi, kube_api: client.ApiClient, lab_namespace: str) -> str:
    """The app `web` (3 replicas), created once; the checks that use it need its Deployment."""
    create(custom, lab_namespace, "web", image="opslab/web:1.0.0", replicas=3)
    apps = client.AppsV1Api(kube_api)
    if not eventually(lambda: apps.read_namespaced_deployment("web", lab_namespace), 30):
        operator.assert_alive()
        raise LearnerError("no Deployment named web appeared within 30 s of creating the app web (task 2)")
    return "web"


# ---------------------------------------------------------------------- the API (your crd.yaml)


@check(points=2, section="The API", timeout=60, hint="In openAPIV3Schema, describe spec with properties: replicas "
       "(integer, default 2) and port (integer, default 8080); keep the status subresource.")  # fmt: skip
def test_the_crd_fills_in_defaults(
    learner_crd: dict[str, str], custom: client.CustomObjectsApi, lab_namespace: str
) -> None:
    """your CRD fills in the defaults (replicas 2, port 8080) and has a status subresource"""
    args = (learner_crd["group"], VERSION, lab_namespace, PLURAL)
    body = {**app_body("defaults", {"image": "opslab/web:1.0.0"}), "apiVersion": f"{learner_crd['group']}/{VERSION}"}
    try:
        stored = custom.create_namespaced_custom_object(*args, body)
    except ApiException as exc:
        raise AssertionError(
            f"your CRD refused a spec with only an image ({exc.status}): {str(exc.body)[:200]}"
        ) from None
    spec = stored.get("spec") or {}
    assert spec.get("replicas") == 2, f"an app created without replicas has replicas {spec.get('replicas')!r}, not 2"
    assert spec.get("port") == 8080, f"an app created without a port has port {spec.get('port')!r}, not 8080"
    try:
        custom.patch_namespaced_custom_object_status(*args, "defaults", {"status": {"observedGeneration": 1}})
    except ApiException as exc:
        raise AssertionError(f"your CRD has no status subresource (status patch answered {exc.status})") from None


@check(points=2, section="The API", timeout=60, hint="Mark image required; give replicas minimum: 1 and maximum: "
       "20; type every field, so the API server answers 422 before your operator ever sees a bad spec.")  # fmt: skip
def test_invalid_specs_are_rejected(
    learner_crd: dict[str, str], custom: client.CustomObjectsApi, lab_namespace: str
) -> None:
    """the API server refuses each bad spec (422) and accepts a good one"""
    args = (learner_crd["group"], VERSION, lab_namespace, PLURAL)
    api_version = f"{learner_crd['group']}/{VERSION}"
    bad = {
        "no image": {"replicas": 2},
        "replicas 0": {"image": "opslab/web:1.0.0", "replicas": 0},
        "replicas 21": {"image": "opslab/web:1.0.0", "replicas": 21},
        'replicas "three"': {"image": "opslab/web:1.0.0", "replicas": "three"},
    }
    accepted = []
    for index, (what, spec) in enumerate(bad.items()):
        try:
            custom.create_namespaced_custom_object(*args, {**app_body(f"bad-{index}", spec), "apiVersion": api_version})
            accepted.append(what)
        except ApiException as exc:
            assert exc.status == 422, f"a spec with {what}: the API answered {exc.status}, not 422"
    assert not accepted, f"your CRD accepts a spec with {', '.join(accepted)}"
    try:
        custom.create_namespaced_custom_object(*args, {**app_body("good", VALID), "apiVersion": api_version})
    except ApiException as exc:
        raise AssertionError(f"your CRD refuses a valid spec {VALID}: {str(exc.body)[:200]}") from None


# ---------------------------------------------------------------------- reconcile


@check(points=3, section="Reconcile", timeout=90, hint="Create the Deployment (replicas, image, containerPort), "
       "the Service (port, selecting the pods) and the PodDisruptionBudget (minAvailable: replicas - 1), each with "
       "an ownerReference to the app (controller: true).")  # fmt: skip
def test_an_app_gets_its_deployment_service_and_budget(
    operator: Operator, web: str, custom: client.CustomObjectsApi, kube_api: client.ApiClient, lab_namespace: str
) -> None:
    """an app gets a Deployment, a Service and a PodDisruptionBudget that match its spec, all owned by it"""
    uid = get(custom, lab_namespace, web)["metadata"]["uid"]
    found = {}
    for kind, read in children(kube_api, lab_namespace, web).items():
        obj = eventually(read, 30)
        if obj is None:
            operator.assert_alive()
            raise AssertionError(f"no {kind} named web appeared within 30 s")
        refs = [r for r in obj.metadata.owner_references or [] if r.uid == uid]
        assert refs and refs[0].controller, f"the {kind} has no controller ownerReference to the app"
        found[kind] = obj
    deployment, service, budget = found["Deployment"], found["Service"], found["PodDisruptionBudget"]
    assert deployment.spec.replicas == 3, f"the Deployment has {deployment.spec.replicas} replicas, the app asks for 3"
    image = deployment.spec.template.spec.containers[0].image
    assert image == "opslab/web:1.0.0", f"the Deployment runs {image}, the app asks for opslab/web:1.0.0"
    assert container_port(deployment) == 8080, f"the container port is {container_port(deployment)}, not 8080"
    pods = deployment.spec.template.metadata.labels or {}
    assert [p.port for p in service.spec.ports or []] == [8080], "the Service does not serve port 8080"
    selector = service.spec.selector or {}
    assert selector and all(pods.get(k) == v for k, v in selector.items()), (
        f"the Service selects {selector}, not the app's pods ({pods})"
    )
    assert budget.spec.min_available == 2, (
        f"the budget's minAvailable is {budget.spec.min_available}, not 2 (replicas - 1)"
    )
    wanted = (budget.spec.selector.match_labels if budget.spec.selector else None) or {}
    assert wanted and all(pods.get(k) == v for k, v in wanted.items()), (
        f"the budget selects {wanted}, not the app's pods"
    )


@check(points=3, section="Status", timeout=90, hint="Set status.conditions (Ready, Progressing, Degraded) and "
       "status.observedGeneration = metadata.generation. Rolled out: Ready True, Progressing and Degraded False.")  # fmt: skip
def test_status_reports_ready_with_the_observed_generation(
    operator: Operator, web: str, custom: client.CustomObjectsApi, lab_namespace: str
) -> None:
    """once rolled out, the status says Ready for the current generation, and neither Progressing nor Degraded"""
    obj = eventually(lambda: ready(custom, lab_namespace, web), 45)
    if not obj:
        operator.assert_alive()
        last = get(custom, lab_namespace, web).get("status")
        raise AssertionError(f"web never reported Ready=True with observedGeneration = generation (status: {last})")
    found = conditions(obj)
    assert {"Ready", "Progressing", "Degraded"} <= set(found), f"conditions: {found}"
    assert found["Progressing"] == "False", "the rollout is complete but Progressing is still True"
    assert found["Degraded"] == "False", "nothing is wrong but Degraded is True"


@check(points=3, section="Status", timeout=150, hint="Ready means every replica of the current spec is available: "
       "compare the Deployment's availableReplicas and updatedReplicas with spec.replicas, and its "
       "status.observedGeneration with its metadata.generation.")  # fmt: skip
def test_ready_is_not_claimed_before_the_rollout_completes(
    operator: Operator, custom: client.CustomObjectsApi, kube_api: client.ApiClient, lab_namespace: str
) -> None:
    """while a quota holds the rollout back the app is not Ready (but Progressing); when it lifts, it is Ready"""
    core = client.CoreV1Api(kube_api)
    running = [p for p in core.list_namespaced_pod(lab_namespace).items if not p.metadata.deletion_timestamp]
    hold_pods(core, lab_namespace, len(running) + 1)
    try:
        create(custom, lab_namespace, "held", image="opslab/web:1.0.0", replicas=3)
        reported = eventually(
            lambda: (get(custom, lab_namespace, "held").get("status") or {}).get("observedGeneration"), 30
        )
        if not reported:
            operator.assert_alive()
            raise AssertionError("the app held by a quota reported no status (observedGeneration) within 30 s")
        claims, progressing = [], False
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = conditions(get(custom, lab_namespace, "held"))
            if found.get("Ready") == "True":
                claims.append(found)
            progressing = found.get("Progressing") == "True"
            time.sleep(0.5)
        assert not claims, "with 1 of 3 replicas able to start (a quota), the app said Ready=True"
        assert progressing, "with the rollout held back, Progressing is not True"
    finally:
        lift_hold(core, client.AppsV1Api(kube_api), lab_namespace)
    assert eventually(lambda: ready(custom, lab_namespace, "held"), 90), (
        "after the quota was lifted, the app did not report Ready=True within 90 s"
    )


@check(points=3, section="Reconcile", timeout=200, hint="Reconcile every field of the spec, each on its own: image "
       "and replicas (Deployment), port (container and Service), disruptionBudget.minAvailable (budget).")  # fmt: skip
def test_each_spec_field_reaches_its_child(
    operator: Operator, custom: client.CustomObjectsApi, kube_api: client.ApiClient, lab_namespace: str
) -> None:
    """changing one spec field at a time (image, replicas, port, minAvailable) reaches the child it belongs to"""
    create(custom, lab_namespace, "fields", image="opslab/web:1.0.0", replicas=2)
    settled(operator, custom, lab_namespace, "fields", "before any change")
    read = children(kube_api, lab_namespace, "fields")
    steps: list[tuple[str, dict[str, Any], Callable[[], bool]]] = [
        ("image", {"image": "opslab/web:1.1.0"},
         lambda: read["Deployment"]().spec.template.spec.containers[0].image == "opslab/web:1.1.0"),
        ("replicas", {"replicas": 3}, lambda: read["Deployment"]().spec.replicas == 3),
        ("port", {"port": 9090},
         lambda: container_port(read["Deployment"]()) == 9090 and [p.port for p in read["Service"]().spec.ports] == [9090]),
        ("disruptionBudget.minAvailable", {"disruptionBudget": {"minAvailable": 1}},
         lambda: read["PodDisruptionBudget"]().spec.min_available == 1),
    ]  # fmt: skip
    for field, change, reached in steps:
        # Only the spec change may wake the operator: while a rollout still writes the children's
        # status, an operator that reconciles on child events alone would catch the change too.
        stays_unchanged(lambda: tuple(r().metadata.resource_version for r in read.values()), quiet=3, limit=30)
        patch_spec(custom, lab_namespace, "fields", change)
        if not eventually(reached, 30):
            operator.assert_alive()
            raise AssertionError(f"changing only {field} did not reach the child objects within 30 s")
        settled(operator, custom, lab_namespace, "fields", f"after changing {field}")


@check(points=3, section="Reconcile", timeout=90, hint="Compare before you write: when the objects already match "
       "the spec, patch nothing (keep labels others added, and keep lastTransitionTime unless a condition's "
       "status changes).")  # fmt: skip
def test_reconcile_writes_nothing_when_nothing_changed(
    operator: Operator, web: str, custom: client.CustomObjectsApi, kube_api: client.ApiClient, lab_namespace: str
) -> None:
    """once settled, a reconcile (woken by a harmless label on each child) writes nothing for 12 s"""
    settled(operator, custom, lab_namespace, web, "before watching for writes")
    apps, core, policy = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api), client.PolicyV1Api(kube_api)
    read = children(kube_api, lab_namespace, web)

    def versions() -> tuple[str, ...]:
        found = [r().metadata.resource_version for r in read.values()]
        return (get(custom, lab_namespace, web)["metadata"]["resourceVersion"], *found)

    # Settled also means quiet: nothing written for 2 s (a condition's time has second resolution,
    # so a reconcile woken within the second of the last status write could hide a rewrite).
    if not stays_unchanged(versions, quiet=2, limit=30):
        raise AssertionError("the app and its children kept changing for 30 s after the app was Ready")
    app_before = get(custom, lab_namespace, web)
    # Each label wakes the operator (a child changed) but asks for nothing: whatever the operator
    # changes after it is a write it did not need. A label, not an annotation: a Deployment's
    # annotations bump its generation, and the rollout it would then report is real. A child's
    # status is the controllers' business, so only what the operator owns (metadata, spec) counts.
    nudge = {"metadata": {"labels": {"grading.opslab.dev/nudge": str(time.time_ns())}}}
    expected = {
        "Deployment": owned_state(apps.patch_namespaced_deployment(web, lab_namespace, nudge)),
        "Service": owned_state(core.patch_namespaced_service(web, lab_namespace, nudge)),
        "PodDisruptionBudget": owned_state(policy.patch_namespaced_pod_disruption_budget(web, lab_namespace, nudge)),
    }
    time.sleep(12)  # the observation window: any write in it is the operator's
    changed = [kind for kind, before in expected.items() if owned_state(read[kind]()) != before]
    app_after = get(custom, lab_namespace, web)
    if app_after["metadata"]["resourceVersion"] != app_before["metadata"]["resourceVersion"]:
        changed.insert(0, f"the app ({status_change(app_before, app_after)})")
    operator.assert_alive()
    assert not changed, f"woken with nothing to do, the operator wrote anyway: {', '.join(changed)}"


@check(points=3, section="Reconcile", timeout=200, hint="Watch the children you own (kopf: an event handler on "
       "them; controller-runtime: Owns()) and put back what someone changed by hand: replicas, image, the "
       "Service's port, a deleted budget.")  # fmt: skip
def test_hand_edits_are_put_back(
    operator: Operator, web: str, custom: client.CustomObjectsApi, kube_api: client.ApiClient, lab_namespace: str
) -> None:
    """a hand edit of any child (scaled, image changed, Service port changed, budget deleted) is put back"""
    settled(operator, custom, lab_namespace, web, "before the hand edits")
    apps, core, policy = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api), client.PolicyV1Api(kube_api)
    read = children(kube_api, lab_namespace, web)
    spec = get(custom, lab_namespace, web)["spec"]
    replicas, image, port = int(spec.get("replicas", 2)), spec["image"], int(spec.get("port", 8080))
    container = read["Deployment"]().spec.template.spec.containers[0].name
    edits: list[tuple[str, Callable[[], Any], Callable[[], bool]]] = [
        ("the Deployment scaled to 1",
         lambda: apps.patch_namespaced_deployment(web, lab_namespace, {"spec": {"replicas": 1}}),
         lambda: read["Deployment"]().spec.replicas == replicas),
        ("the Deployment's image changed",
         lambda: apps.patch_namespaced_deployment(web, lab_namespace, {"spec": {"template": {"spec": {
             "containers": [{"name": container, "image": "opslab/web:by-hand"}]}}}}),
         lambda: read["Deployment"]().spec.template.spec.containers[0].image == image),
        ("the Service's port changed",
         lambda: core.patch_namespaced_service(web, lab_namespace, [{"op": "replace", "path": "/spec/ports/0/port",
                                                                     "value": 9999}]),
         lambda: [p.port for p in read["Service"]().spec.ports] == [port]),
        ("the PodDisruptionBudget deleted",
         lambda: policy.delete_namespaced_pod_disruption_budget(web, lab_namespace),
         lambda: read["PodDisruptionBudget"]().metadata.deletion_timestamp is None),
    ]  # fmt: skip
    for what, edit, restored in edits:
        edit()
        if not eventually(restored, 30):
            operator.assert_alive()
            raise AssertionError(f"{what} by hand, and it stayed so for 30 s")


# ---------------------------------------------------------------------- errors and deletion


@check(points=2, section="Errors", timeout=120, hint="When a child cannot be created (a Service of the same name "
       "belongs to someone else), set Degraded=True with a message naming it, never take it over, and retry with "
       "a delay (kopf.TemporaryError); recover once the conflict is gone.")  # fmt: skip
def test_errors_are_reported_and_retried(
    operator: Operator, custom: client.CustomObjectsApi, kube_api: client.ApiClient, lab_namespace: str
) -> None:
    """a conflict is reported as Degraded while it lasts, never taken over, and retried until it resolves"""
    core = client.CoreV1Api(kube_api)
    squatter = client.V1Service(
        metadata=client.V1ObjectMeta(name="api"), spec=client.V1ServiceSpec(ports=[client.V1ServicePort(port=9999)])
    )
    core.create_namespaced_service(lab_namespace, squatter)
    create(custom, lab_namespace, "api", image="opslab/api:1.0.0", replicas=2)

    def degraded() -> dict[str, Any] | None:
        obj = get(custom, lab_namespace, "api")
        found = [c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == "Degraded"]
        return found[0] if found and found[0].get("status") == "True" else None

    first = eventually(degraded, 30)
    if not first:
        operator.assert_alive()
        raise AssertionError("with a foreign Service named api in the way, the app never reported Degraded=True")
    assert "service" in (first.get("message", "") + first.get("reason", "")).lower(), (
        f"the Degraded condition does not say what is wrong: {first}"
    )
    time.sleep(5)  # the conflict lasts: the report must too
    assert degraded(), "the conflict is still there but the app no longer reports Degraded=True"
    refs = core.read_namespaced_service("api", lab_namespace).metadata.owner_references or []
    assert not refs, "the operator took over the foreign Service (it now has an ownerReference)"
    core.delete_namespaced_service("api", lab_namespace)
    recovered = eventually(lambda: ready(custom, lab_namespace, "api"), 60)
    assert recovered, "after the conflict was removed, the app did not become Ready within 60 s (no retry?)"
    service = core.read_namespaced_service("api", lab_namespace)
    assert any(r.kind == "SelfHealingApp" for r in service.metadata.owner_references or []), (
        "the new Service is not owned by the app"
    )


@check(points=3, section="Deletion", timeout=90, hint="Register each app in the ConfigMap selfhealingapp-registry "
       "of its namespace (key: name, value: image); in a deletion handler (kopf adds a finalizer for it) remove "
       "the entry.")  # fmt: skip
def test_deletion_runs_the_finalizer(
    operator: Operator, custom: client.CustomObjectsApi, kube_api: client.ApiClient, lab_namespace: str
) -> None:
    """an app is registered with its current image; deleting it runs its finalizer: the entry goes, then the app"""
    core = client.CoreV1Api(kube_api)
    create(custom, lab_namespace, "temp", image="opslab/temp:2.0.0", replicas=1)

    def entry() -> str | None:
        return (core.read_namespaced_config_map(REGISTRY, lab_namespace).data or {}).get("temp")

    if not eventually(entry, 30):
        operator.assert_alive()
        raise AssertionError(f"temp was never registered in the ConfigMap {REGISTRY} of its namespace")
    assert entry() == "opslab/temp:2.0.0", f"temp is registered as {entry()!r}, not its image opslab/temp:2.0.0"
    patch_spec(custom, lab_namespace, "temp", {"image": "opslab/temp:2.1.0"})
    assert eventually(lambda: entry() == "opslab/temp:2.1.0", 30), (
        f"temp's image changed to opslab/temp:2.1.0 but its registry entry still says {entry()!r} after 30 s"
    )
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
        raise AssertionError("temp was deleted but is still there after 30 s: the finalizer is never removed")
    assert entry() is None, "temp is gone but its registry entry is still there: the finalizer did not clean up"
