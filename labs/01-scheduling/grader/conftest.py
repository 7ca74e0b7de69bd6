"""Lab 1 grader: the learner's checkout.yaml in cells of simulated nodes of the run's own, and
their drain.py, run in the sandbox with a least-privilege ServiceAccount.

Placement checks share one cell (``placed``); each drain check gets a fresh cell, so any check can
run alone (as a mutant proof does) and no check depends on another one's outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from support import KINDS, Cell, node_names

from opslab.grading import isolation
from opslab.grading.fixtures import LearnerError, learner_yaml

pytest_plugins = ["opslab.grading.fixtures"]
CELLS = ("p", "d1", "d2", "d3")
"""The cells a run may create: placement, and one per drain check."""


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
def learner_access(run_id: str) -> isolation.Grant:
    """What drain.py may do, as `kubectl drain` needs: read nodes and pods, cordon the run's nodes
    (and only those), evict pods. It may not delete pods or touch any other node."""
    nodes = [name for cell in CELLS for name in node_names(run_id, cell).values()]
    return isolation.Grant(
        cluster_rules=(
            {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["nodes"], "verbs": ["patch", "update"], "resourceNames": nodes},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": ["get", "list", "watch"]},
        ),
    )


@pytest.fixture(scope="session")
def cell_access(
    kube_api: client.ApiClient, run_id: str, lab_namespace: str, learner_kubeconfig: Path
) -> Iterator[None]:
    """Evictions happen in the cells' namespaces: bind the learner's ServiceAccount there too."""
    rbac = client.RbacAuthorizationV1Api(kube_api)
    rbac.create_cluster_role(
        client.V1ClusterRole(
            metadata=client.V1ObjectMeta(name=f"opslab-grading-{run_id}-evict", labels=isolation.labels(run_id)),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["pods/eviction"], verbs=["create"])],
        )
    )
    yield


def bind_evictions(api: client.ApiClient, cell: Cell, lab_namespace: str) -> None:
    client.RbacAuthorizationV1Api(api).create_namespaced_role_binding(
        cell.namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="learner-evict", labels=isolation.labels(cell.run_id)),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=f"opslab-grading-{cell.run_id}-evict"
            ),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name=isolation.LEARNER, namespace=lab_namespace)],
        ),
    )


def open_cell(
    api: client.ApiClient, run_id: str, key: str, manifests: list[dict[str, Any]], lab_namespace: str
) -> Cell:
    cell = Cell(api, run_id, key, manifests)
    try:
        cell.up()
        bind_evictions(api, cell, lab_namespace)
    except BaseException:
        cell.down()
        raise
    return cell


@pytest.fixture(scope="session")
def placed(
    kube_api: client.ApiClient, run_id: str, lab_namespace: str, manifests: list[dict[str, Any]]
) -> Iterator[Cell]:
    """The placement cell: the learner's objects, settled (every replica Ready or Unschedulable)."""
    cell = open_cell(kube_api, run_id, "p", manifests, lab_namespace)
    try:
        cell.settle()
        yield cell
    finally:
        cell.down()


@pytest.fixture
def fresh_cell(
    kube_api: client.ApiClient,
    run_id: str,
    lab_namespace: str,
    manifests: list[dict[str, Any]],
    cell_access: None,
) -> Iterator[Callable[[str], Cell]]:
    """Opens a fresh cell for one drain check, settled with three Ready replicas."""
    opened: list[Cell] = []

    def make(key: str) -> Cell:
        cell = open_cell(kube_api, run_id, key, manifests, lab_namespace)
        opened.append(cell)
        pods = cell.settle()
        if len(pods) != 3:
            raise LearnerError(f"{len(pods)} checkout replicas became Ready, 3 are needed to test a drain")
        return cell

    yield make
    for cell in opened:
        cell.down()
