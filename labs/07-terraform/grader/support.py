"""Lab 7's grader helpers: Terraform (or OpenTofu) from the platform's toolchain, run on a copy of
the learner's work in the run's scratch directory and in the run's sandbox (HCL can run programs:
provisioners, external data sources), with providers from the platform's filesystem mirror; OPA and
promtool from the toolchain; held-out inputs, plans and alert tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from opslab.grading.fixtures import LearnerError, LearnerRun, eventually, run_learner
from opslab.grading.isolation import Grant, labels, token_subject
from opslab.grading.sandbox import Sandbox
from opslab.primitives.ports import free_port
from opslab.primitives.processes import terminate
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


# ---------------------------------------------------------------------- the pipeline on the platform

# What the pipeline's identity may do: the tenant module's objects, in namespaces the run's admission
# policy confines to <run>-... (RBAC cannot say "names with this prefix"); state Secrets and Leases
# only in the state namespace of each check (a Role there).
WORKLOADS = ["get", "list", "watch", "create", "update", "patch", "delete"]
PIPELINE_ACCESS = Grant(
    cluster_rules=(
        {"resources": ["namespaces", "resourcequotas", "limitranges", "serviceaccounts", "services", "configmaps",
                       "pods"], "verbs": WORKLOADS},
        {"resources": ["pods/log", "events"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["apps"], "resources": ["deployments", "replicasets"], "verbs": WORKLOADS},
        {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": WORKLOADS},
        {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": WORKLOADS},
        {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": WORKLOADS},
    ),
)  # fmt: skip
STATE_RULES = [
    client.V1PolicyRule(api_groups=[""], resources=["secrets"], verbs=WORKLOADS),
    client.V1PolicyRule(api_groups=["coordination.k8s.io"], resources=["leases"], verbs=WORKLOADS),
]
QUOTA = '{ requests_cpu = "1", requests_memory = "1Gi", limits_cpu = "2", limits_memory = "2Gi", pods = 6 }'


@dataclass
class Pipeline:
    """The learner's pipeline.sh on a copy of their lab, applying the grader's own tenant (team
    ``<run>-<tag>``, so its namespaces are ``<run>-<tag>-<environment>``) as the run's confined
    identity, with its state in ``<run>-<tag>-state``."""

    work: Workspace
    api: client.ApiClient
    kubeconfig: Path
    team: str
    state: str
    user: str

    @classmethod
    def create(cls, work: Workspace, api: client.ApiClient, kubeconfig: Path, run_id: str, tag: str) -> Pipeline:
        team = f"{run_id}-{tag}"
        state = f"{team}-state"
        core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=state, labels=labels(run_id))))
        user = token_subject(kubeconfig)
        _, namespace, account = user.rsplit(":", 2)
        rbac.create_namespaced_role(state, client.V1Role(metadata=client.V1ObjectMeta(name="state"), rules=STATE_RULES))
        rbac.create_namespaced_role_binding(state, client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="state"),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="state"),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name=account, namespace=namespace)],
        ))  # fmt: skip
        return cls(work, api, kubeconfig, team, state, user)

    def close(self) -> None:
        """Delete the check's namespaces (the tenant's and the state's); the run's sweep removes any a
        crashed grader left."""
        core = client.CoreV1Api(self.api)
        mine = [ns.metadata.name for ns in core.list_namespace().items if ns.metadata.name.startswith(f"{self.team}-")]
        for name in mine:
            with contextlib.suppress(ApiException):
                core.delete_namespace(name)

    def set_tenant(
        self,
        environment: str,
        replicas: int,
        image: str = "opslab/grader-app:1.0.0",
        *,
        teams: tuple[str, ...] = (),
        adopt: tuple[str, ...] = (),
    ) -> None:
        """The grader's variables for ``environment`` (envs/<environment>.tfvars): a tenant for each of
        ``teams`` (default: the check's own team), and the teams whose namespaces are to be adopted."""
        tenants = "".join(
            f'  "{team}" = {{\n    owner    = "grader@example.com"\n    image    = "{image}"\n'
            f"    replicas = {replicas}\n    quota    = {QUOTA}\n  }}\n"
            for team in teams or (self.team,)
        )
        adopted = f"adopt = {json.dumps(list(adopt))}\n" if adopt else ""
        text = f'environment = "{environment}"\ntenants = {{\n{tenants}}}\n{adopted}'
        (self.work.root / "envs" / f"{environment}.tfvars").write_text(text)

    def terraform(self, environment: str, *args: str) -> LearnerRun:
        """Terraform in the copy's envs/ (initialised by the pipeline) on ``environment``'s state, as the
        pipeline's identity."""
        done = self.work.run(self.work.root / "envs", *args, KUBECONFIG=str(self.kubeconfig), TF_WORKSPACE=environment)
        if done.returncode != 0:
            raise LearnerError(f"terraform {' '.join(args[:2])} in envs/ failed: {done.tail()}")
        return done

    def saved_plan(self, environment: str) -> dict[str, Any]:
        """The JSON of the plan pipeline.sh --plan saved (envs/<environment>.tfplan)."""
        if not (self.work.root / "envs" / f"{environment}.tfplan").is_file():
            raise LearnerError(f"pipeline.sh {environment} --plan left no envs/{environment}.tfplan")
        out = self.work.root.parent / f"{environment}-plan.json"  # a plan's JSON outgrows a captured output
        script = 'exec "$0" -chdir="$1" show -json -no-color "$2" > "$3"'
        done = run_learner(["bash", "-c", script, self.work.binary, str(self.work.root / "envs"), f"{environment}.tfplan",
                            str(out)], cwd=self.work.root.parent, timeout=120, what="terraform show",
                           env=self.work.env(KUBECONFIG=str(self.kubeconfig), TF_WORKSPACE=environment),
                           sandbox=self.work.sandbox)  # fmt: skip
        if done.returncode != 0:
            raise LearnerError(f"terraform show -json envs/{environment}.tfplan failed: {done.tail()}")
        return dict(json.loads(out.read_text()))

    def env(self, lock_timeout: str) -> dict[str, str]:
        return self.work.env(KUBECONFIG=str(self.kubeconfig), STATE_NAMESPACE=self.state, TERRAFORM=self.work.binary,
                             LOCK_TIMEOUT=lock_timeout, OPA=tool("opa"), TF_WORKSPACE="")  # fmt: skip

    def args(self, environment: str, *mode: str) -> list[str]:
        return ["bash", str(self.work.root / "pipeline.sh"), environment, *mode]

    def run(self, environment: str, *mode: str, lock_timeout: str = "30s", timeout: float = 240) -> LearnerRun:
        return run_learner(self.args(environment, *mode), cwd=self.work.root.parent, timeout=timeout,
                           env=self.env(lock_timeout), what="pipeline.sh", sandbox=self.work.sandbox)  # fmt: skip

    def applied(self, environment: str, *mode: str) -> LearnerRun:
        done = self.run(environment, *mode)
        if done.returncode != 0:
            raise LearnerError(f"pipeline.sh {' '.join((environment, *mode))} failed (exit {done.returncode}): "
                               f"{done.tail()}")  # fmt: skip
        return done

    def namespace(self, environment: str) -> str:
        return f"{self.team}-{environment}"

    def replicas(self, environment: str) -> int | None:
        """The replicas of the tenant's Deployment `app` in ``environment``, None if there is none."""
        try:
            found = client.AppsV1Api(self.api).read_namespaced_deployment("app", self.namespace(environment))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return int(found.spec.replicas)

    def versions(self, namespace: str) -> dict[str, str]:
        """Every object of the tenant's kinds in ``namespace``, by kind/name, with what a change to it
        would change: labels, annotations and spec (or data), never status or resourceVersion, which
        the cluster's controllers move on their own (a Deployment's rollout, a quota's usage)."""
        core, apps = client.CoreV1Api(self.api), client.AppsV1Api(self.api)
        found: dict[str, str] = {}
        listers = {"deployment": apps.list_namespaced_deployment, "service": core.list_namespaced_service,
                   "resourcequota": core.list_namespaced_resource_quota, "secret": core.list_namespaced_secret,
                   "limitrange": core.list_namespaced_limit_range,
                   "serviceaccount": core.list_namespaced_service_account}  # fmt: skip
        for kind, lister in listers.items():
            with contextlib.suppress(ApiException):
                for obj in lister(namespace).items:
                    body = self.api.sanitize_for_serialization(obj)
                    meta = body.get("metadata", {})
                    written = {"labels": meta.get("labels"), "annotations": meta.get("annotations"),
                               **{k: v for k, v in body.items() if k not in ("metadata", "status")}}  # fmt: skip
                    found[f"{kind}/{meta.get('name')}"] = json.dumps(written, sort_keys=True)
        return found

    def state_secrets(self) -> dict[str, str]:
        """The state namespace's Secrets (name: resourceVersion) that hold Terraform state."""
        items = client.CoreV1Api(self.api).list_namespaced_secret(self.state).items
        return {
            s.metadata.name: str(s.metadata.resource_version) for s in items if s.metadata.name.startswith("tfstate")
        }

    def hold_lock(self, environment: str) -> str:
        """Take the state lock of ``environment`` as someone else would: the backend's Lease, with a
        holder. Returns the Lease's name."""
        coordination = client.CoordinationV1Api(self.api)
        leases = [lease for lease in coordination.list_namespaced_lease(self.state).items
                  if (lease.metadata.labels or {}).get("tfstateWorkspace") == environment]  # fmt: skip
        if not leases:
            raise LearnerError(f"no state lock (a Lease labelled tfstateWorkspace={environment}) in {self.state}: "
                               "keep the state in the kubernetes backend, in STATE_NAMESPACE")  # fmt: skip
        name = str(leases[0].metadata.name)
        info = json.dumps({"ID": "grader", "Operation": "OperationTypeApply", "Who": "grader@opslab", "Version": "1",
                           "Created": "2026-01-01T00:00:00Z", "Path": ""})  # fmt: skip
        coordination.patch_namespaced_lease(name, self.state, {
            "metadata": {"annotations": {"app.terraform.io/lock-info": info}},
            "spec": {"holderIdentity": "grader"},
        })  # fmt: skip
        return name

    def release_lock(self, lease: str) -> None:
        client.CoordinationV1Api(self.api).patch_namespaced_lease(lease, self.state, {"spec": {"holderIdentity": None}})


def terraform_children(proc: subprocess.Popen[str], verbs: tuple[str, ...] = ("plan", "apply")) -> list[psutil.Process]:
    """The terraform (or tofu) plan and apply processes under ``proc`` right now."""
    found = []
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(proc.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                line = child.cmdline()
                if line and Path(line[0]).name in ("terraform", "tofu") and any(v in line for v in verbs):
                    found.append(child)
    return found


def adoption_changes(change: dict[str, Any]) -> list[str]:
    """What an imported namespace's planned update would change, by field, leaving out labels and
    annotations under kubernetes.io/: the 1.13.4 provider never reads those back, so a module that
    sets one (app.kubernetes.io/managed-by) plans to add it to every object it imports."""

    def first(side: str) -> dict[str, Any]:
        found = (change.get(side) or {}).get("metadata") or [{}]
        return dict(found[0] or {})

    def mine(values: dict[str, str] | None) -> dict[str, str]:
        return {k: v for k, v in (values or {}).items() if "kubernetes.io/" not in k}

    before, after = first("before"), first("after")
    unknown = ((change.get("after_unknown") or {}).get("metadata") or [{}])[0] or {}
    differ = [f"metadata.{key}" for key in ("labels", "annotations") if mine(before.get(key)) != mine(after.get(key))]
    for key, value in after.items():
        if (
            key not in ("labels", "annotations")
            and value is not None
            and not unknown.get(key)
            and before.get(key) != value
        ):
            differ.append(f"metadata.{key}")
    return differ


@contextlib.contextmanager
def private_pushgateway(scratch: Path) -> Iterator[str]:
    """A Pushgateway of the check's own on a free loopback port (the platform's is shared by every
    grading run, and a check on workspace "dev" must not overwrite another run's), stopped after."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (scratch / f"pushgateway-{port}.log").open("wb") as log:
        proc = subprocess.Popen([tool("prometheus-pushgateway"), f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            if not eventually(lambda: httpx.get(f"{url}/-/ready", timeout=2).status_code == 200, 20, interval=0.1):
                raise RuntimeError(f"the grader's Pushgateway did not start on port {port}")
            yield url
        finally:
            terminate([psutil.Process(proc.pid)], grace=10)
            proc.wait()
