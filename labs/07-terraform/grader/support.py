"""Lab 7's grader helpers: Terraform (or OpenTofu) from the platform's toolchain, run on a copy of
the learner's work in the run's scratch directory and in the run's sandbox (HCL can run programs:
provisioners, external data sources), with providers from the platform's filesystem mirror; OPA and
promtool from the toolchain; held-out inputs, plans and alert tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from opslab.grading.fixtures import LearnerError, LearnerRun, run_learner
from opslab.grading.sandbox import Sandbox
from opslab.settings import load as load_settings
from opslab.toolchain.resolve import terraform_cli, toolchain_for

HELDOUT = Path(__file__).parent / "heldout"
MODULE = Path("modules") / "tenant"
LABELS = ("opslab.dev/owner", "opslab.dev/team", "opslab.dev/environment")
HARD = {"requests.cpu": "1", "requests.memory": "1Gi", "limits.cpu": "2", "limits.memory": "2Gi", "pods": "10"}
LEFT_OUT = shutil.ignore_patterns(".terraform", "*.tfplan", "*.plan.json", "terraform.tfstate*", "__pycache__")


def tool(name: str) -> str:
    """A program of the platform's toolchain (opa, promtool)."""
    return str(toolchain_for(load_settings()).require(name))


def terraform() -> str:
    """terraform >= 1.6 when there is one (OPSLAB_BIN_TERRAFORM, then PATH), else OpenTofu; OPSLAB_LAB07_TOFU=1
    forces OpenTofu (CI proves that path)."""
    toolchain = toolchain_for(load_settings())
    if os.environ.get("OPSLAB_LAB07_TOFU") == "1":
        return str(toolchain.require("tofu"))
    return str(terraform_cli(toolchain))


@dataclass
class Workspace:
    """A copy of the learner's lab in the run's scratch directory, and how to run Terraform in it."""

    root: Path
    sandbox: Sandbox
    config: Path
    binary: str

    @classmethod
    def copy(cls, lab_path: Path, scratch: Path, sandbox: Sandbox, name: str) -> Workspace:
        root = scratch / name
        if root.exists():
            shutil.rmtree(root)
        shutil.copytree(lab_path, root, ignore=LEFT_OUT)
        config = scratch / "terraformrc"
        config.write_text(toolchain_for(load_settings()).terraform_cli_config())
        return cls(root, sandbox, config, terraform())

    def env(self, **extra: str) -> dict[str, str]:
        return {"TF_CLI_CONFIG_FILE": str(self.config), "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1", **extra}

    def run(self, directory: Path, *args: str, timeout: float = 120, **env: str) -> LearnerRun:
        """``terraform -chdir=directory args`` in the sandbox. The working directory is scratch itself: the
        sandbox shows a program's working directory read-only, and Terraform writes .terraform/ and state."""
        return run_learner([self.binary, f"-chdir={directory}", *args, "-no-color"], cwd=self.root.parent, timeout=timeout,
                           env=self.env(**env), what=f"{Path(self.binary).name} {args[0]}", sandbox=self.sandbox)  # fmt: skip

    def init(self, directory: Path) -> None:
        done = self.run(directory, "init", "-input=false", "-backend=false")
        if done.returncode != 0:
            raise LearnerError(f"init fails in {directory.relative_to(self.root)}: {done.tail()}")

    def test(self, directory: Path, *args: str) -> LearnerRun:
        self.init(directory)
        return self.run(directory, "test", *args, timeout=180)


RUN_LINE = re.compile(r'^\s*run "([^"]+)"\.\.\. (pass|fail|skip|error)', re.MULTILINE)


def run_results(output: str) -> dict[str, str]:
    """Each test run's name and verdict from `terraform test` output."""
    return dict(RUN_LINE.findall(output))


def refusal_message(output: str, variable: str) -> str:
    """What an 'Invalid value for variable' error says about ``var.variable`` (the learner's
    error_message), or '' when the plan raised no such error for it."""
    names = re.compile(rf"var\.{re.escape(variable)}[. ]")
    for block in output.split("Error: ")[1:]:
        lines = [line.strip(" │╵╷├─") for line in block.splitlines()]
        if not lines[0].startswith("Invalid value for variable"):
            continue
        marks = [i for i, line in enumerate(lines) if names.match(line)]
        if marks:
            after = " ".join(line for line in lines[marks[0] + 1 :] if line)
            return after.split("This was checked by")[0].strip()
    return ""


# ---------------------------------------------------------------------- plans for the policy


@dataclass(frozen=True)
class PlanCase:
    name: str
    expect: str
    plan: dict[str, Any]


def _namespace(change: dict[str, Any]) -> dict[str, Any]:
    labels = {"opslab.dev/owner": "ledger.at.example.org", "opslab.dev/team": change["ns"].rsplit("-", 1)[0],
              "opslab.dev/environment": change["env"]}  # fmt: skip
    actions = change["actions"]
    before = None if actions == ["create"] else {"metadata": [{"name": change["ns"], "labels": dict(labels)}]}
    after_labels = {k: v for k, v in labels.items() if k not in change.get("drop", [])}
    after = None if actions == ["delete"] else {"metadata": [{"name": change["ns"], "labels": after_labels}]}
    return {"address": f'module.tenant["{change["ns"]}"].kubernetes_namespace.this', "mode": "managed",
            "type": "kubernetes_namespace", "name": "this", "change": {"actions": actions, "before": before,
                                                                        "after": after}}  # fmt: skip


def _quota(change: dict[str, Any]) -> dict[str, Any]:
    hard = {k: v for k, v in HARD.items() if k not in change.get("drop", [])}
    body = {"metadata": [{"name": "tenant-quota", "namespace": change["quota"]}], "spec": [{"hard": hard}]}
    actions = change["actions"]
    return {"address": f'module.tenant["{change["quota"]}"].kubernetes_resource_quota.this', "mode": "managed",
            "type": "kubernetes_resource_quota", "name": "this",
            "change": {"actions": actions, "before": None if actions == ["create"] else {**body, "spec": [{"hard": HARD}]},
                       "after": None if actions == ["delete"] else body}}  # fmt: skip


def load_plan_cases() -> list[PlanCase]:
    cases = []
    for raw in yaml.safe_load((HELDOUT / "plans.yaml").read_text()):
        changes = [_namespace(c) if "ns" in c else _quota(c) for c in raw["changes"]]
        plan = {"format_version": "1.2", "resource_changes": changes}
        cases.append(PlanCase(raw["name"], raw["expect"], plan))
    return cases


def policy_files(lab_path: Path) -> tuple[list[Path], list[Path]]:
    """The learner's Rego rule files and test files in policy/."""
    found = sorted((lab_path / "policy").glob("*.rego"))
    tests = [p for p in found if p.name.endswith("_test.rego")]
    return [p for p in found if p not in tests], tests


def denials(rules: list[Path], plan: dict[str, Any], scratch: Path) -> list[str]:
    """What data.terraform.plan.deny says about ``plan`` under ``rules`` (the grader's own OPA)."""
    plan_file = scratch / "plan.json"
    plan_file.write_text(json.dumps(plan))
    args = [tool("opa"), "eval", "--format", "json", "-i", str(plan_file)]
    for rule in rules:
        args += ["-d", str(rule)]
    done = subprocess.run([*args, "data.terraform.plan.deny"], capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip
    if done.returncode != 0:
        raise LearnerError(f"opa cannot evaluate your policy: {done.stderr.strip().splitlines()[-1:]}")
    result = json.loads(done.stdout).get("result") or []
    if not result:
        raise LearnerError("data.terraform.plan.deny is not defined: your policy's package is terraform.plan")
    value = result[0]["expressions"][0]["value"]
    return sorted(str(v) for v in value) if isinstance(value, list) else []
