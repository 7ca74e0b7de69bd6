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

from opslab.grading.fixtures import LearnerError, learner_yaml

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
    created_classes = []
    created: dict[str, Any] = {}
    try:
        for doc in documents:
            kind = doc["kind"]
            doc.setdefault("metadata", {})
            if kind == "PriorityClass":
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
    except ApiException as exc:
        message = exc.body if isinstance(exc.body, str) else str(exc)
        raise LearnerError(f"the API server refused your {doc['kind']}: {message[:300]}") from None
    if "Deployment" not in created:
        raise LearnerError("checkout.yaml has no Deployment")
    if created["Deployment"]["metadata"].get("name") != "checkout":
        raise LearnerError("the Deployment must be named checkout")
    yield created
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


@pytest.fixture
def uncordon_all(kube_api: client.ApiClient) -> Iterator[None]:
    """Whatever a drain check does to the nodes is undone afterwards."""
    yield
    core = client.CoreV1Api(kube_api)
    for node in core.list_node().items:
        if node.spec.unschedulable:
            core.patch_node(node.metadata.name, {"spec": {"unschedulable": False}})
