"""Terraform for agents: plan an allow-listed configuration, then apply exactly the plan shown.

Terraform runs as the least-privilege ServiceAccount opslab-terraform/terraform-runner
(platform/k8s/bootstrap/terraform.yaml): it may use the state and its lock, read what the platform
module manages, and restore namespaces, resource quotas and limit ranges, but delete nothing and
write no RBAC. Its token is minted here, with the admin's kubeconfig, into a 0600 file in a private
directory of the toolbox's (removed with it), never the run directory or anywhere the agent is
pointed to. Each plan is saved (``plan -out``) under a digest of its bytes; terraform_apply applies
that saved file and nothing else, and terraform itself refuses it once the state has moved on.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from opslab.runtime import kube
from opslab.runtime import kubeconfig as kubeconfig_module
from opslab.runtime.component import RuntimeContext
from opslab.runtime.terraform import STATE_NAMESPACE, Terraform
from opslab.settings import Settings
from opslab.toolchain.resolve import toolchain_for

RUNNER = "terraform-runner"
TOKEN_SECONDS = 3600
CONFIGS = {"platform": "terraform"}
"""The configurations an agent may plan and apply: name -> folder under platform/."""


class TerraformFailed(Exception):
    """terraform could not plan or apply; the message is its error, one line."""


@dataclass
class ShownPlan:
    config: str
    digest: str
    path: Path
    shown_at: float
    changes: list[dict[str, Any]] = field(default_factory=list)

    def as_result(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "plan_digest": self.digest,
            "changes": self.changes,
            "summary": f"{len(self.changes)} to change" if self.changes else "no changes: matches the configuration",
        }


class TerraformTools:
    """Plans and applies for one toolbox; the runner's kubeconfig and the saved plans live in a
    private directory until ``close``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.workdir = Path(tempfile.mkdtemp(prefix="opslab-terraform-"))  # mode 0700
        self._runners: dict[str, Terraform] = {}

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def configs(self) -> list[str]:
        return sorted(CONFIGS)

    def _runner(self, config: str) -> Terraform:
        if config not in self._runners:
            settings = self.settings
            path = self.workdir / "terraform-runner.kubeconfig"
            with kube.api_client(settings.paths.kubeconfig) as admin:
                kubeconfig_module.write_service_account(
                    path, settings.paths.kubeconfig, client.CoreV1Api(admin),
                    account=RUNNER, namespace=STATE_NAMESPACE, seconds=TOKEN_SECONDS, context=RUNNER,
                )  # fmt: skip
            ctx = RuntimeContext(settings, toolchain_for(settings))
            module = settings.paths.platform / CONFIGS[config]
            self._runners[config] = Terraform(ctx, module, name=f"agent-{config}", kubeconfig=path)
        return self._runners[config]

    def plan(self, config: str) -> ShownPlan:
        runner = self._runner(config)
        plan_file = self.workdir / f"terraform-{config}-{time.time_ns()}.tfplan"
        code, output = runner.plan_to(plan_file)
        if code not in {0, 2}:
            raise TerraformFailed(f"terraform plan of {config} failed: {_error(output)}")
        digest = hashlib.sha256(plan_file.read_bytes()).hexdigest()[:16]
        changes = [
            {"address": change["address"], "actions": change["change"]["actions"], "attributes": _changed(change)}
            for change in runner.show(plan_file).get("resource_changes", [])
            if change["change"]["actions"] != ["no-op"]
        ]
        return ShownPlan(config, digest, plan_file, time.time(), changes)

    def apply(self, plan: ShownPlan) -> dict[str, Any]:
        ok, output = self._runner(plan.config).apply_plan(plan.path)
        if not ok:
            raise TerraformFailed(f"terraform apply of {plan.config} failed: {_error(output)}")
        done = next((line.strip() for line in output.splitlines() if line.startswith("Apply complete!")), "applied")
        return {"config": plan.config, "plan_digest": plan.digest, "applied": done}


def _changed(change: dict[str, Any]) -> list[str]:
    """The top-level attributes a change alters (what drifted), for the agent to read."""
    before, after = change["change"].get("before") or {}, change["change"].get("after") or {}
    return sorted(key for key in set(before) | set(after) if before.get(key) != after.get(key))


def _error(output: str) -> str:
    """terraform's first error line (its output has the error after "Error: "), else its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error:") or line.startswith("│ Error:")]
    return (errors[0] if errors else (lines[-1] if lines else "no output")).lstrip("│ ")[:300]
