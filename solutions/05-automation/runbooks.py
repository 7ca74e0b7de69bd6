"""Runbooks as code: which runbook an alert gets, and the Python runbooks themselves.

Every runbook looks before it acts (a redelivered or repeated job must not undo a fix), changes
one target, and verifies that the change took: the Deployment is available again. A verification
that times out is a transient failure (the job is retried with backoff); a target that cannot be
fixed this way is a permanent one (the job fails at once and a human is paged).
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ansible_runner
from kubernetes import client, config
from kubernetes.client.rest import ApiException

HERE = Path(__file__).resolve().parent
REPLICAS_ANNOTATION = "opslab.dev/replicas"
VERIFY_TIMEOUT_S = float(os.environ.get("OPSLAB_VERIFY_TIMEOUT", "20"))

RUNBOOKS = {
    "ShopServiceUnavailable": "scale-up",
    "ShopPodsNotReady": "rollout-undo",
    "ShopPodsCrashLooping": "rollout-restart",
    "HealthProbeFailing": "rollout-restart",
    "KubeNodeUnschedulable": "uncordon",
    "TerraformDriftDetected": "terraform-reapply",
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
    apps = apps_api()
    deployment = _deployment(apps, target)
    wanted = (deployment.metadata.annotations or {}).get(REPLICAS_ANNOTATION)
    if not wanted or not wanted.isdigit() or int(wanted) < 1:
        raise PermanentError(f"{target} has no {REPLICAS_ANNOTATION} annotation: its intended size is unknown")
    namespace, name = target.split("/", 1)
    if (deployment.spec.replicas or 0) != int(wanted):
        log(f"scaling {target} from {deployment.spec.replicas} to {wanted} replicas")
        apps.patch_namespaced_deployment_scale(name, namespace, {"spec": {"replicas": int(wanted)}})
    else:
        log(f"{target} already wants {wanted} replicas")
    verify(apps, target, log)
    return f"scaled {target} to {wanted} replicas"


def rollout_restart(target: str, log: Callable[[str], None], *, job_id: str, **_: object) -> str:
    """Restart the pods by changing the template; the job's id marks its own restart, so a redelivered
    job does not restart the Deployment a second time."""
    apps = apps_api()
    deployment = _deployment(apps, target)
    annotations = deployment.spec.template.metadata.annotations or {}
    namespace, name = target.split("/", 1)
    if annotations.get("opslab.dev/restarted-by") == job_id:
        log(f"{target} was already restarted by this job")
    else:
        now = dt.datetime.now(dt.UTC).isoformat()
        log(f"restarting the pods of {target}")
        patch = {"kubectl.kubernetes.io/restartedAt": now, "opslab.dev/restarted-by": job_id}
        apps.patch_namespaced_deployment(name, namespace, {"spec": {"template": {"metadata": {"annotations": patch}}}})
    verify(apps, target, log)
    return f"restarted {target}"


def rollout_undo(target: str, log: Callable[[str], None], *, job_id: str, artifacts: Path, **_: object) -> str:
    """Roll back with the Ansible runbook (playbooks/rollout-undo.yml) through ansible-runner."""
    namespace, name = target.split("/", 1)
    private = artifacts / job_id
    private.mkdir(parents=True, exist_ok=True)
    earlier = private / "artifacts" / "run" / "status"
    if earlier.is_file() and earlier.read_text().strip() == "successful":
        # an earlier attempt of this job rolled back and then timed out verifying: rolling back
        # again would bring the broken release back; only verify
        log(f"{target} was rolled back by an earlier attempt of this job")
        verify(apps_api(), target, log)
        return f"rolled back {target}"
    run = ansible_runner.run(
        private_data_dir=str(private),
        playbook=str(HERE / "playbooks" / "rollout-undo.yml"),
        inventory='localhost ansible_connection=local ansible_python_interpreter="{{ ansible_playbook_python }}"',
        extravars={"target_namespace": namespace, "target_deployment": name},
        envvars={
            "K8S_AUTH_KUBECONFIG": os.environ.get("KUBECONFIG", ""),
            # Ansible's temporary files go beside the job's artifacts, not to ~ (which a sandboxed or
            # service user may not have)
            "ANSIBLE_REMOTE_TMP": str(private / "tmp"),
            "ANSIBLE_LOCAL_TEMP": str(private / "tmp"),
        },
        ident="run",
        quiet=True,
        suppress_env_files=True,
        timeout=120,
    )
    log(f"ansible-runner: {run.status} (rc {run.rc}); artifacts in {private / 'artifacts' / 'run'}")
    if run.status != "successful":
        raise TransientError(f"the rollout-undo playbook ended {run.status} (rc {run.rc})")
    verify(apps_api(), target, log)
    return f"rolled back {target}"


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
