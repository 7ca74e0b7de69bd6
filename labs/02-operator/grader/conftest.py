"""Lab 2 grader: installs the learner's CRD and runs their kopf operator against a fresh namespace."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from support import CRD_NAME, Operator

from opslab.grading.fixtures import LearnerError, learner_file, learner_yaml, python
from opslab.primitives.processes import kill_group

pytest_plugins = ["opslab.grading.fixtures"]


@pytest.fixture(scope="session")
def crd(kube_api: client.ApiClient, lab_path: Path) -> dict[str, Any]:
    """The learner's CRD, applied (server-side) and Established."""
    documents = learner_yaml(lab_path, "crd.yaml")
    definition = next((d for d in documents if d.get("kind") == "CustomResourceDefinition"), None)
    if definition is None:
        raise LearnerError("crd.yaml has no CustomResourceDefinition")
    if definition.get("metadata", {}).get("name") != CRD_NAME:
        raise LearnerError(f"the CRD must be named {CRD_NAME}")
    extensions = client.ApiextensionsV1Api(kube_api)
    try:
        existing = extensions.read_custom_resource_definition(CRD_NAME)
        definition["metadata"]["resourceVersion"] = existing.metadata.resource_version
        extensions.replace_custom_resource_definition(CRD_NAME, definition)
    except ApiException as exc:
        if exc.status != 404:
            raise LearnerError(f"the API server refused crd.yaml: {str(exc.body)[:300]}") from None
        try:
            extensions.create_custom_resource_definition(definition)
        except ApiException as error:
            raise LearnerError(f"the API server refused crd.yaml: {str(error.body)[:300]}") from None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = extensions.read_custom_resource_definition(CRD_NAME).status
        if any(c.type == "Established" and c.status == "True" for c in (status.conditions or [])):
            time.sleep(1)
            return definition
        time.sleep(0.5)
    raise LearnerError("the CRD did not become Established within 30 s")


@pytest.fixture(scope="session")
def operator(
    crd: dict[str, Any],
    lab_path: Path,
    lab_namespace: str,
    kube_api: client.ApiClient,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Operator]:
    """kopf run shop_operator.py --standalone --namespace <grading namespace>."""
    script = learner_file(lab_path, "shop_operator.py")
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [python(), "-m", "kopf", "run", str(script), "--standalone", "--namespace", lab_namespace],
            cwd=lab_path,
            env={**os.environ, "KUBECONFIG": os.environ.get("OPSLAB_KUBECONFIG", "")},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = Operator(proc, log)
    time.sleep(4)
    yield running
    # Delete the apps while the operator still runs, so its finalizer can do its work; a namespace
    # whose objects keep finalizers would otherwise stay Terminating.
    custom = client.CustomObjectsApi(kube_api)
    args = ("labs.opslab.dev", "v1alpha1", lab_namespace, "selfhealingapps")
    with contextlib.suppress(ApiException):
        custom.delete_collection_namespaced_custom_object(*args)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if not custom.list_namespaced_custom_object(*args)["items"]:
                break
        except ApiException:
            break
        time.sleep(1)
    kill_group(proc.pid, 15)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        kill_group(proc.pid)
        proc.wait()
    with contextlib.suppress(ApiException):  # an operator without a working finalizer leaves some
        for item in custom.list_namespaced_custom_object(*args)["items"]:
            custom.patch_namespaced_custom_object(*args, item["metadata"]["name"], {"metadata": {"finalizers": []}})


@pytest.fixture(scope="session")
def custom(kube_api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube_api)
