"""Lab 5 grader: runs the learner's API, Dramatiq workers and health agent (in the sandbox, with a
least-privilege kubeconfig) against the platform's Redis, Prometheus and Alertmanager, on
Deployments and Redis keys of the run's own (see support.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from support import Automation, Cell, new_token

from opslab.grading import isolation
from opslab.grading.fixtures import env_or_fail
from opslab.grading.sandbox import Sandbox

pytest_plugins = ["opslab.grading.fixtures"]


@pytest.fixture(scope="session")
def learner_access() -> isolation.Grant:
    """What runbooks need in the run's namespace: read and change Deployments (scale, template,
    rollback through ReplicaSets), read pods, and record events."""
    return isolation.Grant(
        rules=(
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch", "patch", "update"]},
            {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["get", "patch", "update"]},
            {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
        )
    )


@pytest.fixture
def cell(kube_api: client.ApiClient, lab_namespace: str, run_id: str) -> Iterator[Cell]:
    """The check's own Deployments in the run's namespace; deleted when it ends."""
    made = Cell(kube_api, lab_namespace, run_id)
    yield made
    for name in made.names:
        try:
            made.apps.delete_namespaced_deployment(name, lab_namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise


@pytest.fixture
def automation(
    request: pytest.FixtureRequest,
    lab_path: Path,
    sandbox: Sandbox,
    scratch: Path,
    tmp_path: Path,
    learner_kubeconfig: Path,
    run_id: str,
) -> Iterator[Automation]:
    """The learner's programs for one check: every Redis key of theirs under grading-<run>-<check>."""
    key = request.node.name.removeprefix("test_")[:24].rstrip("_")
    token, token_file = new_token(scratch, f"token-{key}")
    artifacts = scratch / f"artifacts-{key}"
    artifacts.mkdir(exist_ok=True)
    made = Automation(
        lab_path=lab_path, sandbox=sandbox, logs=tmp_path, redis_url=env_or_fail("OPSLAB_REDIS_URL"),
        prefix=f"grading-{run_id}-{key}", token=token, token_file=token_file, kubeconfig=learner_kubeconfig,
        prometheus=env_or_fail("OPSLAB_PROMETHEUS_URL"), artifacts=artifacts, scratch=scratch,
    )  # fmt: skip
    yield made
    made.stop_all()
