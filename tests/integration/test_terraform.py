"""The Terraform-managed part of the platform: applied, in-cluster state, no drift."""

from __future__ import annotations

import base64
import os
import shlex
import subprocess
import uuid
from pathlib import Path

import pytest
from kubernetes import client

from opslab.runtime.lifecycle import Platform
from opslab.runtime.terraform import STATE_NAMESPACE, move_former_state

pytestmark = pytest.mark.platform


def test_plan_after_up_reports_no_changes(platform: Platform) -> None:
    code, output = platform.terraform.plan_exit_code()
    assert code == 0, output[-2000:]


def test_a_learner_shell_can_plan_the_platform_module(platform: Platform, tmp_path: Path) -> None:
    """`source .opslab/env` gives a shell the CLI and variables to plan platform/terraform by hand,
    and the policy tools lab 6 and lab 7 use (opa, promtool)."""
    cli = platform.terraform.binary().name  # terraform, or tofu on a machine without terraform
    script = (
        f"source {shlex.quote(str(platform.paths.env_file))} && opa version >/dev/null && promtool --version "
        f">/dev/null && cd platform/terraform && "
        f"{cli} init -input=false >/dev/null && {cli} plan -input=false -detailed-exitcode -lock=false"
    )
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "TF_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=platform.paths.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]


def test_state_lives_in_a_secret_and_resources_exist(platform: Platform, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    secret = core.read_namespaced_secret("tfstate-default-platform", STATE_NAMESPACE)
    assert secret.data and "tfstate" in secret.data
    names = {ns.metadata.name for ns in core.list_namespace().items}
    assert {"shop", "monitoring", "labs"} <= names
    quota = core.read_namespaced_resource_quota("opslab-quota", "shop")
    assert quota.spec.hard["pods"] == "200"
    assert core.read_namespaced_limit_range("opslab-defaults", "labs").spec.limits[0].default["cpu"] == "250m"


def test_lab_service_account_has_least_privilege(platform: Platform, api: client.ApiClient) -> None:
    authz = client.AuthorizationV1Api(api)
    user = "system:serviceaccount:labs:lab-runner"

    def allowed(verb: str, resource: str, namespace: str | None, group: str = "") -> bool:
        review = client.V1SubjectAccessReview(
            spec=client.V1SubjectAccessReviewSpec(
                user=user,
                groups=["system:serviceaccounts", "system:serviceaccounts:labs", "system:authenticated"],
                resource_attributes=client.V1ResourceAttributes(
                    verb=verb, resource=resource, namespace=namespace, group=group
                ),
            )
        )
        return bool(authz.create_subject_access_review(review).status.allowed)

    assert allowed("create", "deployments", "labs", "apps")
    assert allowed("get", "pods", "labs")
    assert not allowed("get", "secrets", "labs"), "no Secrets"
    assert not allowed("create", "deployments", "shop", "apps"), "no other namespace"
    assert not allowed("create", "rolebindings", "labs", "rbac.authorization.k8s.io"), "no RBAC escalation"
    assert not allowed("list", "nodes", None), "no cluster-scoped objects"


def test_state_an_older_opslab_kept_elsewhere_is_moved_once(platform: Platform, api: client.ApiClient) -> None:
    """`up` moves the state Secret out of kube-system (as it did before): copied, then the old one
    deleted, labels and data intact; a second run finds nothing to move."""
    core = client.CoreV1Api(api)
    source, target = (f"t-tfstate-{part}-{uuid.uuid4().hex[:6]}" for part in ("old", "new"))
    for namespace in (source, target):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    try:
        labels = {"tfstate": "true", "tfstateWorkspace": "default"}
        state = base64.b64encode(b'{"version": 4, "serial": 7}').decode()
        core.create_namespaced_secret(source, client.V1Secret(
            metadata=client.V1ObjectMeta(name="tfstate-default-platform", labels=labels), data={"tfstate": state},
        ))  # fmt: skip
        kubeconfig = platform.paths.kubeconfig
        assert move_former_state(kubeconfig, source, target, "tfstate-default-platform")
        moved = core.read_namespaced_secret("tfstate-default-platform", target)
        assert moved.data == {"tfstate": state} and moved.metadata.labels == labels
        assert core.list_namespaced_secret(source).items == []
        assert not move_former_state(kubeconfig, source, target, "tfstate-default-platform")
    finally:
        for namespace in (source, target):
            core.delete_namespace(namespace)
