"""Lab 2 grader: installs the learner's CRD and runs their operator against a fresh namespace.

The operator is kopf's (shop_operator.py) or, on the Go track (a go.mod in the graded directory),
a controller-runtime binary built from the learner's module before the checks start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from support import CRD_NAME, Operator, build_go_operator, go_track

from opslab.grading.fixtures import LearnerError, learner_file, learner_yaml, python
from opslab.primitives.processes import kill_group

pytest_plugins = ["opslab.grading.fixtures"]

GO_OPERATOR = pytest.StashKey[Path | LearnerError]()
"""The Go track's built operator, or why it did not build."""


def pytest_collection_finish(session: pytest.Session) -> None:
    """On the Go track, build the operator once, before the first check starts.

    Every check has a time limit (pytest-timeout), and a session fixture is set up inside the first
    check that uses it, so a cold `go build` of controller-runtime (minutes) made there would spend
    that check's limit and fail it. Built here, between collection and the first check, it counts
    only against the grader's own limit. A build error is kept, and the operator fixture reports it
    as the reason of every check that needs the operator.
    """
    raw = os.environ.get("OPSLAB_LAB_PATH", "")
    wanted = any("operator" in getattr(item, "fixturenames", ()) for item in session.items)
    if not raw or not go_track(Path(raw)) or not wanted:
        return
    out = Path(tempfile.mkdtemp(prefix="opslab-lab02-go-"))
    session.config.add_cleanup(lambda: shutil.rmtree(out, ignore_errors=True))
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    began = time.monotonic()
    try:
        session.config.stash[GO_OPERATOR] = build_go_operator(Path(raw), out)
        outcome = "built"
    except LearnerError as error:
        session.config.stash[GO_OPERATOR] = error
        outcome = "failed to build"
    if reporter is not None:
        reporter.write_line(f"lab 2, Go track: the operator {outcome} in {time.monotonic() - began:.0f} s")


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
    pytestconfig: pytest.Config,
) -> Iterator[Operator]:
    """The learner's operator, watching the grading namespace only.

    kopf: `kopf run shop_operator.py --standalone --namespace <ns>`; Go track: `<built binary>
    --namespace <ns>`. Either reads the platform's kubeconfig from KUBECONFIG.
    """
    if go_track(lab_path):
        built = pytestconfig.stash.get(GO_OPERATOR, None)
        if built is None:  # the hook did not run (a custom pytest run): build now, within this check's limit
            built = build_go_operator(lab_path, tmp_path_factory.mktemp("go-build"))
        if isinstance(built, LearnerError):
            raise LearnerError(str(built))
        command, name = [str(built), "--namespace", lab_namespace], "your Go operator"
    else:
        script = learner_file(lab_path, "shop_operator.py")
        command = [python(), "-m", "kopf", "run", str(script), "--standalone", "--namespace", lab_namespace]
        name = "shop_operator.py"
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            cwd=lab_path,
            env={**os.environ, "KUBECONFIG": os.environ.get("OPSLAB_KUBECONFIG", "")},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = Operator(proc, log, name)
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
