"""Runbooks as code: which runbook an alert gets, and the Python runbooks themselves.

Every runbook looks before it acts (a redelivered or repeated job must not undo a fix), changes
one target, and verifies that the change took: the Deployment is available again. A verification
that times out is a transient failure (the job is retried with backoff); a target that cannot be
fixed this way is a permanent one (the job fails at once and a human is paged).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client, config
from kubernetes.client.rest import ApiException

HERE = Path(__file__).resolve().parent
REPLICAS_ANNOTATION = "opslab.dev/replicas"
VERIFY_TIMEOUT_S = float(os.environ.get("OPSLAB_VERIFY_TIMEOUT", "20"))

RUNBOOKS: dict[str, str] = {
    # TODO (task 2): alert name -> runbook (README, "Runbooks")
}
"""Alert name -> runbook; any other alert is escalated to a human."""


class TransientError(Exception):
    """Worth retrying later: the change has not taken yet, the target is locked, the API hiccuped."""


class PermanentError(Exception):
    """Retrying will not help: the target is missing or says nothing about its intended state."""


@dataclass(frozen=True)
class Target:
    runbook: str
    target: str
    service: str


def pick(labels: dict[str, str]) -> Target:
    """The runbook and target for an alert's labels."""
    alertname = labels.get("alertname", "")
    runbook = RUNBOOKS.get(alertname, "escalate")
    service = labels.get("service") or labels.get("deployment") or labels.get("node") or "unknown"
    if runbook == "uncordon":
        return Target(runbook, labels.get("node", ""), service)
    if runbook == "terraform-reapply":
        return Target(runbook, labels.get("workspace", "default"), service)
    namespace = labels.get("namespace", "shop")
    deployment = labels.get("deployment") or labels.get("service", "")
    return Target(runbook, f"{namespace}/{deployment}", service)


# ------------------------------------------------------------------ the Kubernetes side


@functools.cache
def apps_api() -> client.AppsV1Api:
    """One client per process (the kubeconfig is read once; its connection pool is shared)."""
    return client.AppsV1Api(config.new_client_from_config())


@functools.cache
def core_api() -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config())


def _deployment(apps: client.AppsV1Api, target: str) -> client.V1Deployment:
    namespace, name = target.split("/", 1)
    try:
        return apps.read_namespaced_deployment(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            raise PermanentError(f"deployment {target} does not exist") from None
        raise TransientError(f"cannot read deployment {target}: {exc.status} {exc.reason}") from None


def rolled_out(deployment: client.V1Deployment) -> bool:
    """Every wanted replica is updated and ready, and the controller has seen the latest spec."""
    spec, status = deployment.spec, deployment.status
    wanted = spec.replicas if spec.replicas is not None else 1
    return (
        (status.observed_generation or 0) >= (deployment.metadata.generation or 0)
        and (status.updated_replicas or 0) == wanted
        and (status.ready_replicas or 0) == wanted
        and (status.replicas or 0) == wanted
    )


def verify(apps: client.AppsV1Api, target: str, log: Callable[[str], None]) -> None:
    deadline = time.monotonic() + VERIFY_TIMEOUT_S
    while time.monotonic() < deadline:
        if rolled_out(_deployment(apps, target)):
            log(f"verified: {target} is rolled out and every replica is ready")
            return
        time.sleep(1)
    raise TransientError(f"{target} is not available {VERIFY_TIMEOUT_S:.0f} s after the change")


def scale_up(target: str, log: Callable[[str], None], **_: object) -> str:
    """Scale the Deployment back to its opslab.dev/replicas annotation and verify (TODO, task 2)."""
    raise NotImplementedError("scale_up")


def rollout_restart(target: str, log: Callable[[str], None], *, job_id: str, **_: object) -> str:
    """Restart the Deployment's pods, once per job, and verify (TODO, task 2)."""
    raise NotImplementedError("rollout_restart")


def rollout_undo(target: str, log: Callable[[str], None], *, job_id: str, artifacts: Path, **_: object) -> str:
    """Run playbooks/rollout-undo.yml through ansible-runner, artifacts per job, and verify (TODO, task 3)."""
    raise NotImplementedError("rollout_undo")


def uncordon(target: str, log: Callable[[str], None], **_: object) -> str:
    core = core_api()
    try:
        node = core.read_node(target)
    except ApiException as exc:
        raise PermanentError(f"node {target}: {exc.status} {exc.reason}") from None
    if node.spec.unschedulable:
        log(f"uncordoning node {target}")
        core.patch_node(target, {"spec": {"unschedulable": False}})
    return f"node {target} is schedulable"


def terraform_reapply(target: str, log: Callable[[str], None], **_: object) -> str:
    directory = os.environ.get("OPSLAB_TERRAFORM_DIR")
    if not directory:
        raise PermanentError("no Terraform configuration (OPSLAB_TERRAFORM_DIR) to re-apply")
    import subprocess  # noqa: PLC0415

    binary = os.environ.get("OPSLAB_TERRAFORM_BIN", "terraform")
    done = subprocess.run(
        [binary, f"-chdir={directory}", "apply", "-auto-approve", "-input=false", "-no-color"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    log(done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "terraform printed nothing")
    if done.returncode != 0:
        raise TransientError(f"terraform apply failed: {done.stderr.strip().splitlines()[-1:]}")
    return f"re-applied workspace {target}"


ACTIONS: dict[str, Callable[..., str]] = {
    "scale-up": scale_up,
    "rollout-restart": rollout_restart,
    "rollout-undo": rollout_undo,
    "uncordon": uncordon,
    "terraform-reapply": terraform_reapply,
}
