"""Lab 2 grader: tests the learner's CRD on a run-scoped copy, and runs their operator (in the
sandbox, as the run's least-privilege ServiceAccount) against the platform's SelfHealingApp API in
the run's namespace.

The operator is kopf's (shop_operator.py) or, on the Go track (a go.mod in the graded directory),
a controller-runtime binary built from the learner's module before the checks start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException
from support import (
    CRD_NAME,
    GROUP,
    LEARNER_CLUSTER_RULES,
    LEARNER_RULES,
    PLURAL,
    VERSION,
    Operator,
    build_go_operator,
    go_track,
)

from opslab.grading import isolation
from opslab.grading.fixtures import LearnerError, eventually, learner_file, learner_yaml, python, start_learner
from opslab.grading.sandbox import Sandbox

pytest_plugins = ["opslab.grading.fixtures"]

GO_OPERATOR = pytest.StashKey[Path | LearnerError]()
"""The Go track's built operator, or why it did not build."""


def pytest_collection_finish(session: pytest.Session) -> None:
    """On the Go track, build the operator once, before the first check starts.

    Every check has a time limit (pytest-timeout), and a session fixture is set up inside the first
    check that uses it, so a cold `go build` of controller-runtime (minutes) made there would spend
    that check's limit and fail it. Built here, between collection and the first check, it counts
    only against lab.toml's setup_limit. A build error is kept, and the operator fixture reports it
    as the reason of every check that needs the operator.
    """
    raw = os.environ.get("OPSLAB_LAB_PATH", "")
    wanted = any("operator" in getattr(item, "fixturenames", ()) for item in session.items)
    if not raw or not go_track(Path(raw)) or not wanted or session.config.getoption("--rubric-list", None):
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


def established(extensions: client.ApiextensionsV1Api, name: str) -> bool:
    status = extensions.read_custom_resource_definition(name).status
    return any(c.type == "Established" and c.status == "True" for c in (status.conditions or []))


@pytest.fixture(scope="session")
def platform_api(kube_api: client.ApiClient) -> None:
    """The platform's SelfHealingApp CRD (installed by `up`), put back if a learner replaced it by
    hand: the operator checks run against it, never against a learner's copy."""
    path = Path(os.environ.get("OPSLAB_ROOT", ".")) / "platform" / "k8s" / "crds" / "selfhealingapp.yaml"
    wanted = yaml.safe_load(path.read_text())
    extensions = client.ApiextensionsV1Api(kube_api)
    try:
        current = extensions.read_custom_resource_definition(CRD_NAME)
        schema = current.spec.versions[0].schema.open_apiv3_schema
        if not (schema.x_kubernetes_preserve_unknown_fields and not schema.properties):
            wanted["metadata"]["resourceVersion"] = current.metadata.resource_version
            extensions.replace_custom_resource_definition(CRD_NAME, wanted)
    except ApiException as exc:
        if exc.status != 404:
            raise
        with contextlib.suppress(ApiException):
            extensions.create_custom_resource_definition(wanted)
    if not eventually(lambda: established(extensions, CRD_NAME), 30):
        pytest.fail(f"the platform's CRD {CRD_NAME} is not Established: restart the platform with `make up`")


@pytest.fixture(scope="session")
def learner_crd(kube_api: client.ApiClient, lab_path: Path, run_id: str) -> Iterator[dict[str, str]]:
    """The learner's crd.yaml, installed under a group of the run's own (so no learner's schema
    ever replaces the platform's); yields the group and plural to create test objects with."""
    documents = learner_yaml(lab_path, "crd.yaml")
    definition = next((d for d in documents if d.get("kind") == "CustomResourceDefinition"), None)
    if definition is None:
        raise LearnerError("crd.yaml has no CustomResourceDefinition")
    if definition.get("metadata", {}).get("name") != CRD_NAME:
        raise LearnerError(f"the CRD must be named {CRD_NAME}")
    spec = definition.get("spec") or {}
    if spec.get("group") != GROUP or (spec.get("names") or {}).get("plural") != PLURAL:
        raise LearnerError(f"the CRD must serve group {GROUP}, plural {PLURAL}")
    if not any(v.get("name") == VERSION and v.get("served") for v in spec.get("versions") or []):
        raise LearnerError(f"the CRD must serve version {VERSION}")
    group = f"{run_id}.grading.opslab.dev"
    definition["metadata"] = {"name": f"{PLURAL}.{group}", "labels": isolation.labels(run_id)}
    spec["group"] = group
    extensions = client.ApiextensionsV1Api(kube_api)
    try:
        extensions.create_custom_resource_definition(definition)
    except ApiException as exc:
        body = exc.body if isinstance(exc.body, str) else str(exc)
        raise LearnerError(f"the API server refused crd.yaml: {body[:300]}") from None
    try:
        if not eventually(lambda: established(extensions, f"{PLURAL}.{group}"), 30):
            raise LearnerError("your CRD did not become Established within 30 s")
        yield {"group": group, "version": VERSION, "plural": PLURAL}
    finally:
        with contextlib.suppress(ApiException):
            extensions.delete_custom_resource_definition(f"{PLURAL}.{group}")


@pytest.fixture(scope="session")
def learner_access() -> isolation.Grant:
    return isolation.Grant(rules=LEARNER_RULES, cluster_rules=LEARNER_CLUSTER_RULES)


@pytest.fixture(scope="session")
def operator(
    platform_api: None,
    lab_path: Path,
    lab_namespace: str,
    kube_api: client.ApiClient,
    learner_kubeconfig: Path,
    sandbox: Sandbox,
    tmp_path_factory: pytest.TempPathFactory,
    pytestconfig: pytest.Config,
) -> Iterator[Operator]:
    """The learner's operator, watching the grading namespace only, as the run's ServiceAccount.

    kopf: `kopf run shop_operator.py --standalone --namespace <ns>`; Go track: `<built binary>
    --namespace <ns>`. Either reads its kubeconfig from KUBECONFIG.
    """
    readable: list[Path] = []
    if go_track(lab_path):
        built = pytestconfig.stash.get(GO_OPERATOR, None)
        if built is None:  # the hook did not run (a custom pytest run): build now, within this check's limit
            built = build_go_operator(lab_path, tmp_path_factory.mktemp("go-build"))
        if isinstance(built, LearnerError):
            raise LearnerError(str(built))
        command, name = [str(built), "--namespace", lab_namespace], "your Go operator"
        readable.append(built.parent)
    else:
        script = learner_file(lab_path, "shop_operator.py")
        command = [python(), "-m", "kopf", "run", str(script), "--standalone", "--namespace", lab_namespace]
        name = "shop_operator.py"
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    proc = start_learner(
        command, cwd=lab_path, log=log, sandbox=sandbox, env={"KUBECONFIG": str(learner_kubeconfig)},
        what=name, readable=readable,
    )  # fmt: skip
    running = Operator(proc, log, name)
    yield running
    # Delete the apps while the operator still runs, so its finalizer can do its work; a namespace
    # whose objects keep finalizers would otherwise stay Terminating.
    custom = client.CustomObjectsApi(kube_api)
    args = (GROUP, VERSION, lab_namespace, PLURAL)
    with contextlib.suppress(ApiException):
        custom.delete_collection_namespaced_custom_object(*args)
    eventually(lambda: not custom.list_namespaced_custom_object(*args)["items"], 20)
    running.stop()
    with contextlib.suppress(ApiException):  # an operator without a working finalizer leaves some
        for item in custom.list_namespaced_custom_object(*args)["items"]:
            custom.patch_namespaced_custom_object(*args, item["metadata"]["name"], {"metadata": {"finalizers": None}})


@pytest.fixture(scope="session")
def custom(kube_api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube_api)
