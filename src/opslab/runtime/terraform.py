"""The Terraform-managed part of the platform: platform/terraform/, applied by `opslab up`.

The CLI is terraform >= 1.6 from PATH if present, otherwise OpenTofu from opslab's cache. Providers
come from a filesystem mirror in the cache (built from source), selected by a CLI configuration
file, so `init` never contacts a registry. State lives in the cluster (the `kubernetes` backend:
a Secret in namespace opslab-terraform, with a Lease as the lock; platform/k8s/bootstrap/terraform.yaml).
A platform whose state an older opslab kept in kube-system has it moved there by the first `init`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from opslab.primitives.errors import ComponentFailed
from opslab.primitives.files import write_atomic
from opslab.primitives.processes import Completed, run
from opslab.runtime import kube
from opslab.runtime.component import RuntimeContext

STATE_SECRET_SUFFIX = "platform"
STATE_NAMESPACE = "opslab-terraform"
FORMER_STATE_NAMESPACE = "kube-system"
STATE_SECRET = f"tfstate-default-{STATE_SECRET_SUFFIX}"


class Terraform:
    """Runs the Terraform CLI on one root module with opslab's offline configuration."""

    def __init__(
        self, ctx: RuntimeContext, module: Path | None = None, name: str = "platform", kubeconfig: Path | None = None
    ) -> None:
        self.ctx = ctx
        self.module = module or ctx.paths.platform / "terraform"
        self.name = name
        self.data_root = ctx.paths.state / "terraform"
        self.kubeconfig = kubeconfig or ctx.paths.kubeconfig
        """Whose rights terraform runs with: the admin's, or a least-privilege account's."""

    @property
    def data_dir(self) -> Path:
        """TF_DATA_DIR, one per provider mirror: a rebuilt provider gets a fresh plugin cache.

        (Terraform keeps using a provider it installed earlier if the version is unchanged.)
        """
        return self.data_root / f"{self.name}-{self.ctx.toolchain.provider_mirror().parent.name}"

    @property
    def cli_config(self) -> Path:
        return self.ctx.config_file("terraform.rc")

    def binary(self) -> Path:
        return self.ctx.toolchain.terraform_cli()

    def write_cli_config(self) -> Path:
        return write_atomic(self.cli_config, self.ctx.toolchain.terraform_cli_config())

    def user_env(self) -> dict[str, str]:
        """What a learner's shell needs to run terraform against the platform by hand."""
        return {
            "TF_CLI_CONFIG_FILE": str(self.cli_config),
            "KUBE_CONFIG_PATH": str(self.kubeconfig),
            "TF_VAR_kubeconfig": str(self.kubeconfig),
        }

    def env(self) -> dict[str, str]:
        return {
            **self.user_env(),
            "TF_DATA_DIR": str(self.data_dir),
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "CHECKPOINT_DISABLE": "1",
            "TF_PLUGIN_CACHE_DIR": "",
            "HOME": os.environ.get("HOME", str(Path.home())),
        }

    def _run(self, *args: str, timeout: float = 300) -> Completed:
        return run([self.binary(), *args], cwd=self.module, env=self.env(), timeout=timeout)

    def init(self) -> None:
        if self.kubeconfig == self.ctx.paths.kubeconfig:
            move_former_state(self.kubeconfig)
        self.write_cli_config()
        if not self.data_dir.is_dir():
            # A new provider mirror: its checksums differ from the ones the lock file recorded.
            (self.module / ".terraform.lock.hcl").unlink(missing_ok=True)
            if self.data_root.is_dir():
                for stale in self.data_root.glob(f"{self.name}-*"):
                    shutil.rmtree(stale)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        out = self._run(
            # -reconfigure: the backend settings are opslab's, not ones remembered in the data dir.
            "init", "-input=false", "-no-color", "-reconfigure",
            f"-backend-config=config_path={self.kubeconfig}",
            f"-backend-config=secret_suffix={STATE_SECRET_SUFFIX}",
            f"-backend-config=namespace={STATE_NAMESPACE}",
        )  # fmt: skip
        if not out.ok:
            raise ComponentFailed(f"terraform init in {self.module} failed: {out.tail()}")

    def apply(self) -> str:
        """Init and apply; returns a one-line summary."""
        self.init()
        out = self._run("apply", "-auto-approve", "-input=false", "-no-color", "-lock-timeout=60s")
        if not out.ok:
            raise ComponentFailed(f"terraform apply in {self.module} failed: {out.tail()}")
        for line in out.stdout.splitlines():
            if line.startswith("Apply complete!"):
                return line.strip()
        return "applied"

    def plan_exit_code(self, *, lock: bool = True) -> tuple[int, str]:
        """`plan -detailed-exitcode`: 0 no changes, 2 changes (drift), 1 error; with the output.

        ``lock=False`` reads the state without taking the lock (for periodic drift checks).
        """
        self.init()
        locking = "-lock-timeout=60s" if lock else "-lock=false"
        out = self._run("plan", "-detailed-exitcode", "-input=false", "-no-color", locking)
        return out.returncode, out.stdout + out.stderr

    def plan_to(self, plan_file: Path, *, lock_timeout: int = 30) -> tuple[int, str]:
        """`plan -detailed-exitcode -out=plan_file`: 0 no changes, 2 changes, 1 error; with the output."""
        self.init()
        out = self._run(
            "plan", "-detailed-exitcode", "-input=false", "-no-color", f"-lock-timeout={lock_timeout}s",
            f"-out={plan_file}",
        )  # fmt: skip
        return out.returncode, out.stdout + out.stderr

    def show(self, plan_file: Path) -> dict[str, Any]:
        """`show -json` of a saved plan."""
        out = self._run("show", "-json", "-no-color", str(plan_file), timeout=120)
        if not out.ok:
            raise ComponentFailed(f"terraform show of {plan_file.name} failed: {out.tail()}")
        shown: dict[str, Any] = json.loads(out.stdout)
        return shown

    def apply_plan(self, plan_file: Path, *, lock_timeout: int = 30) -> tuple[bool, str]:
        """Apply exactly a saved plan (terraform refuses one that the state has moved past)."""
        out = self._run("apply", "-input=false", "-no-color", f"-lock-timeout={lock_timeout}s", str(plan_file))
        return out.ok, out.stdout + out.stderr


def move_former_state(
    kubeconfig: Path, source: str = FORMER_STATE_NAMESPACE, target: str = STATE_NAMESPACE, name: str = STATE_SECRET
) -> bool:
    """Move the platform module's state Secret from kube-system (where opslab kept it before) to
    STATE_NAMESPACE, once: copied first, the old one deleted after. True if it moved."""
    with kube.api_client(kubeconfig) as api:
        core = client.CoreV1Api(api)
        try:
            old: Any = core.read_namespaced_secret(name, source)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        meta = client.V1ObjectMeta(name=name, labels=old.metadata.labels, annotations=old.metadata.annotations)
        try:
            core.create_namespaced_secret(target, client.V1Secret(metadata=meta, data=old.data, type=old.type))
        except ApiException as exc:
            if exc.status != 409:  # already moved by a run that stopped before deleting the old one
                raise
        core.delete_namespaced_secret(name, source)
        with contextlib.suppress(ApiException):  # the backend's lock, if a run left one behind
            client.CoordinationV1Api(api).delete_namespaced_lease(f"lock-{name}", source)
        return True
