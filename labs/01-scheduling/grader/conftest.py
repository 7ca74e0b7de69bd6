"""Lab 1 grader: applies the learner's checkout.yaml into a fresh namespace and runs drain.py."""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from support import running, wait_for

from opslab.grading.fixtures import LearnerError, find_object, learner_yaml

pytest_plugins = ["opslab.grading.fixtures"]

KINDS = {"Deployment", "PodDisruptionBudget", "PriorityClass"}


@pytest.fixture(scope="session")
def manifests(lab_path: Path) -> list[dict[str, Any]]:
    documents = learner_yaml(lab_path, "checkout.yaml")
    kinds = {d["kind"] for d in documents}
    if kinds - KINDS:
        raise LearnerError(
            f"checkout.yaml may hold only {', '.join(sorted(KINDS))}; found {', '.join(sorted(kinds - KINDS))}"
        )
    return documents


@pytest.fixture(scope="session")
def deployed(
    kube_api: client.ApiClient, lab_namespace: str, manifests: list[dict[str, Any]]
) -> Iterator[dict[str, Any]]:
    """The learner's objects, created in the grading namespace (PriorityClasses renamed per run)."""
    apps, policy, scheduling = (
        client.AppsV1Api(kube_api),
        client.PolicyV1Api(kube_api),
        client.SchedulingV1Api(kube_api),
    )
    documents = copy.deepcopy(manifests)
    renames = {}
    for doc in documents:
        if doc["kind"] == "PriorityClass":
            old = doc["metadata"]["name"]
            renames[old] = doc["metadata"]["name"] = f"{old}-{lab_namespace}"
    created_classes: list[str] = []
    created: dict[str, Any] = {}
    try:
        for doc in documents:
            kind = doc["kind"]
            doc.setdefault("metadata", {})
            if kind == "PriorityClass":
                # A learner's globalDefault would change every pod of the cluster; the check reads it
                # from the manifest, so the copy created here never is the default.
                doc["globalDefault"] = False
                scheduling.create_priority_class(doc)
                created_classes.append(doc["metadata"]["name"])
            elif kind == "Deployment":
                spec = doc.get("spec", {}).get("template", {}).get("spec", {})
                if spec.get("priorityClassName") in renames:
                    spec["priorityClassName"] = renames[spec["priorityClassName"]]
                doc["metadata"]["namespace"] = lab_namespace
                apps.create_namespaced_deployment(lab_namespace, doc)
            elif kind == "PodDisruptionBudget":
                doc["metadata"]["namespace"] = lab_namespace
                policy.create_namespaced_pod_disruption_budget(lab_namespace, doc)
            created.setdefault(kind, doc)
        if "Deployment" not in created:
            raise LearnerError("checkout.yaml has no Deployment")
        if created["Deployment"]["metadata"].get("name") != "checkout":
            raise LearnerError("the Deployment must be named checkout")
        yield created
    except ApiException as exc:
        message = exc.body if isinstance(exc.body, str) else str(exc)
        raise LearnerError(f"the API server refused your {doc['kind']}: {message[:300]}") from None
    finally:
        for name in created_classes:
            with contextlib.suppress(ApiException):
                scheduling.delete_priority_class(name)


@pytest.fixture(scope="session")
def settled(kube_api: client.ApiClient, lab_namespace: str, deployed: dict[str, Any]) -> list[client.V1Pod]:
    """Wait (bounded) for the scheduler to place checkout; the pods Running when it settles."""
    core = client.CoreV1Api(kube_api)
    replicas = int(deployed["Deployment"]["spec"].get("replicas", 1))
    wait_for(lambda: len(running(core, lab_namespace)) >= replicas, timeout=45)
    time.sleep(2)
    return running(core, lab_namespace)


@pytest.fixture(scope="session")
def nodes(kube_api: client.ApiClient) -> dict[str, client.V1Node]:
    return {n.metadata.name: n for n in client.CoreV1Api(kube_api).list_node().items}


@pytest.fixture(scope="session")
def uncordon_all(kube_api: client.ApiClient) -> Iterator[None]:
    """Whatever a drain check does to the nodes is undone when grading ends."""
    yield
    core = client.CoreV1Api(kube_api)
    for node in core.list_node().items:
        if node.spec.unschedulable:
            core.patch_node(node.metadata.name, {"spec": {"unschedulable": False}})


@pytest.fixture
def budget_exhausted(
    kube_api: client.ApiClient,
    lab_namespace: str,
    manifests: list[dict[str, Any]],
    settled: list[client.V1Pod],
    uncordon_all: None,
) -> None:
    """Make the budget allow no disruption: cordon a node holding a checkout pod and evict that pod
    (through the API, not the learner's tool), so its replacement has nowhere to go."""
    core, policy = client.CoreV1Api(kube_api), client.PolicyV1Api(kube_api)
    name = find_object(manifests, "PodDisruptionBudget")["metadata"]["name"]

    def allowed() -> int:
        return int(policy.read_namespaced_pod_disruption_budget(name, lab_namespace).status.disruptions_allowed or 0)

    if allowed() == 0:
        return
    taint = "opslab.dev/dedicated"
    for pod in running(core, lab_namespace):
        node = core.read_node(pod.spec.node_name)
        if node.spec.unschedulable or any(t.key == taint for t in node.spec.taints or []):
            continue
        core.patch_node(pod.spec.node_name, {"spec": {"unschedulable": True}})
        eviction = client.V1Eviction(metadata=client.V1ObjectMeta(name=pod.metadata.name, namespace=lab_namespace))
        core.create_namespaced_pod_eviction(pod.metadata.name, lab_namespace, eviction)
        break
    if not wait_for(lambda: allowed() == 0, 30):
        raise LearnerError("could not bring checkout to its budget's limit (is the budget minAvailable: 2 of 3?)")
