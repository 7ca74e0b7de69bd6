"""Lab 6 grader: the learner's policy/ (held-out plans, their own `opa test` tests) and agent.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from incidents import MAX_INCIDENTS, heldout_folder, heldout_incidents
from kubernetes import client
from support import Case, learner_policy, load_cases, opa, platform_plan_policy, tool
from world import Harness, RunAlertmanager, RunOpa, World

from opslab.grading import isolation
from opslab.grading.sandbox import Sandbox
from opslab.incidents.catalog import Incident, IncidentInvalid
from opslab.settings import load as load_settings

pytest_plugins = ["opslab.grading.fixtures"]


@pytest.fixture(scope="session")
def policy(lab_path: Path) -> tuple[list[Path], list[Path]]:
    """The learner's rule files and test files."""
    return learner_policy(lab_path)


@pytest.fixture(scope="session")
def heldout_plans() -> list[Case]:
    return load_cases()


@pytest.fixture(scope="session")
def held_out() -> list[Incident]:
    """The held-out incidents the learner's agent meets (the instructor's, or the grader's own)."""
    folder = heldout_folder()
    try:
        found = heldout_incidents(load_settings().paths.root, folder)
    except IncidentInvalid as exc:
        pytest.fail(f"the held-out incidents cannot be read: {exc}")
    if not found:
        pytest.fail(f"no held-out incidents in {folder}: give a folder of incident files (OPSLAB_INCIDENTS_HELDOUT)")
    if len(found) > MAX_INCIDENTS:
        pytest.fail(f"{len(found)} held-out incidents in {folder}: the check's time limit fits {MAX_INCIDENTS}; "
                    "keep that many")  # fmt: skip
    return found


# ---------------------------------------------------------------------- the agent's world


@pytest.fixture(scope="session")
def learner_access() -> isolation.Grant:
    """What the toolbox may do in the world (it acts as the run's ServiceAccount, like the
    incident responder in the shop): read the workloads, scale, patch and roll back Deployments."""
    return isolation.Grant(
        rules=(
            {"apiGroups": ["apps"], "resources": ["deployments", "replicasets"], "verbs": ["get", "list", "watch"]},
            {
                "apiGroups": ["apps"],
                "resources": ["deployments", "deployments/scale"],
                "verbs": ["get", "patch", "update"],
            },
            {"apiGroups": [""], "resources": ["pods", "events"], "verbs": ["get", "list", "watch"]},
        ),
        cluster_rules=({"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]},),
    )


@pytest.fixture(scope="session")
def world(
    kube_api: client.ApiClient, lab_namespace: str, learner_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
) -> World:
    return World(kube_api, lab_namespace, learner_kubeconfig, tmp_path_factory.mktemp("world")).up()


@pytest.fixture(scope="session")
def run_opa(lab_namespace: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunOpa]:
    settings = load_settings()
    running = RunOpa(opa(), settings.paths.platform / "policy" / "agent.rego", lab_namespace,
                     tmp_path_factory.mktemp("opa"))  # fmt: skip
    yield running
    running.stop()


@pytest.fixture(scope="session")
def run_alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunAlertmanager]:
    running = RunAlertmanager(tool("alertmanager"), tmp_path_factory.mktemp("alertmanager"))
    yield running
    running.stop()


@pytest.fixture
def harness(
    world: World, run_opa: RunOpa, run_alertmanager: RunAlertmanager, lab_path: Path, sandbox: Sandbox
) -> Iterator[Harness]:
    """The learner's agent against the world; the world is put back after each check."""
    yield Harness(world, run_opa.url, run_alertmanager, lab_path, sandbox, platform_plan_policy(), Path(opa()).parent)
    world.submitted.clear()
    world.restore()
