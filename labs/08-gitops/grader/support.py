"""Lab 8's grader helpers: the run's three environments on the platform's GitOps reconciler.

The grader builds what the learner's lab describes, under names of its own run:
- namespaces grade-<run>-dev, -staging and -prod, each with the accounts bootstrap.yaml gives
  (gitops-deployer, gitops-guardrails) and the opt-in that lets the reconciler act as them;
- the repositories <git>/<run>/app.git (the learner's app/, one feat: commit, tagged v0.1.0) and
  <git>/<run>/delivery.git (the learner's delivery/, every overlay pinned to the grader's first
  image, <registry>/<run>/web@sha256:...);
- the learner's clusters/<env>.yaml objects, moved into the run's namespaces and pointed at the
  run's delivery repository (nothing else of them is changed: intervals, prune, wait, dependsOn
  and paths are the learner's).

The learner's scripts (pipeline.sh, promote.sh, rollback.sh) run in the run's sandbox as the run's
ServiceAccount, which may read Flux's objects and workloads and nothing more: they change the
cluster only through Git, as the lab asks.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from opslab.grading.fixtures import LearnerRun, eventually, python, run_learner
from opslab.grading.isolation import Grant, create_namespace
from opslab.grading.sandbox import Sandbox
from opslab.settings import load as load_settings
from opslab.toolchain.resolve import toolchain_for

ENVIRONMENTS = ("dev", "staging", "prod")
SOURCE = ("source.toolkit.fluxcd.io", "v1", "gitrepositories")
KUSTOMIZATION = ("kustomize.toolkit.fluxcd.io", "v1", "kustomizations")
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
BURN_METRIC = "web_error_budget_burn_rate"
HEALTHY_BURN = 0.1
READ = ["get", "list", "watch"]

SCRIPTS_ACCESS = Grant(
    cluster_rules=(
        {"apiGroups": ["source.toolkit.fluxcd.io"], "resources": ["gitrepositories"], "verbs": READ},
        {"apiGroups": ["kustomize.toolkit.fluxcd.io"], "resources": ["kustomizations"], "verbs": READ},
        {"apiGroups": ["apps"], "resources": ["deployments", "replicasets"], "verbs": READ},
        {"resources": ["pods", "events"], "verbs": READ},
    ),
)  # fmt: skip
"""What the learner's scripts may do in the cluster: read. Every change goes through Git."""


def tool(name: str) -> str:
    """A program of the platform's toolchain (crane, opa, kubectl)."""
    return str(toolchain_for(load_settings()).require(name))


def git(cwd: Path, *args: str, check: bool = True) -> str:
    """The grader's own git (never the learner's), as user grader."""
    done = subprocess.run(["git", "-c", "user.name=grader", "-c", "user.email=grader@opslab.invalid", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    if check and done.returncode != 0:
        raise AssertionError(f"the grader's git {args[0]} failed: {done.stderr.strip()[:300]}")
    return done.stdout.strip()


def crane(*args: str) -> str:
    done = subprocess.run([tool("crane"), *args, "--insecure"], capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip
    if done.returncode != 0:
        raise AssertionError(f"the grader's crane {args[0]} failed: {done.stderr.strip()[:300]}")
    return done.stdout.strip()


@dataclass
class Overlay:
    """What an overlay's kustomization.yaml pins for image web."""

    name: str
    digest: str
    tag: str

    @classmethod
    def read(cls, path: Path) -> Overlay:
        document = yaml.safe_load(path.read_text()) or {}
        for entry in document.get("images", []) or []:
            if entry.get("name") == "web":
                return cls(str(entry.get("newName", "")), str(entry.get("digest", "")), str(entry.get("newTag", "")))
        return cls("", "", "")

    @staticmethod
    def pin(path: Path, name: str, digest: str) -> None:
        document = yaml.safe_load(path.read_text()) or {}
        others = [i for i in document.get("images", []) or [] if i.get("name") != "web"]
        document["images"] = [*others, {"name": "web", "newName": name, "digest": digest}]
        path.write_text(yaml.safe_dump(document, sort_keys=False))


@dataclass
class Delivery:
    """The run's environments, repositories and images, and the learner's scripts against them."""

    api: client.ApiClient
    run_id: str
    lab_path: Path
    scratch: Path
    sandbox: Sandbox
    kubeconfig: Path
    git_url: str
    registry: str
    prometheus: str
    pushgateway: str
    namespaces: dict[str, str] = field(default_factory=dict)
    first: str = ""
    """The digest of the grader's first image (0.1.0), which every environment starts on."""
    sources: list[tuple[str, str]] = field(default_factory=list)
    """The GitRepositories created at set-up (namespace, name): what nudge() asks to fetch."""
    problems: list[str] = field(default_factory=list)
    """What in the learner's clusters/ the API server refused at set-up (each check reports it)."""

    # ------------------------------------------------------------------ names

    @property
    def app_repo(self) -> str:
        return f"{self.git_url}/{self.run_id}/app.git"

    @property
    def delivery_repo(self) -> str:
        return f"{self.git_url}/{self.run_id}/delivery.git"

    @property
    def image(self) -> str:
        return f"{self.registry}/{self.run_id}/web"

    @property
    def app(self) -> Path:
        return self.scratch / "grader-app"

    @property
    def delivery(self) -> Path:
        return self.scratch / "grader-delivery"

    def script_env(self) -> dict[str, str]:
        """What the learner's scripts are given (the README lists it)."""
        return {
            "APP_REPO": self.app_repo,
            "DELIVERY_REPO": self.delivery_repo,
            "IMAGE": self.image,
            "NAMESPACE_PREFIX": f"grade-{self.run_id}-",
            "OPSLAB_GIT_URL": self.git_url,
            "OPSLAB_REGISTRY": self.registry,
            "OPSLAB_PROMETHEUS_URL": self.prometheus,
            "BURN_LIMIT": "1",
            "PYTHON": python(),
            "CRANE": tool("crane"),
            "OPA": tool("opa"),
            "KUBECTL": tool("kubectl"),
            "KUBECONFIG": str(self.kubeconfig),
            "GIT_TERMINAL_PROMPT": "0",
        }

    # ------------------------------------------------------------------ set-up

    def set_up(self) -> None:
        for environment in ENVIRONMENTS:
            self.namespaces[environment] = create_namespace(self.api, self.run_id, suffix=environment)
            self._accounts(self.namespaces[environment])
        self._push_app()
        self._push_delivery()
        self._apply_clusters()
        for environment in ENVIRONMENTS:
            self.set_burn(environment, HEALTHY_BURN)

    def _accounts(self, namespace: str) -> None:
        core, rbac = client.CoreV1Api(self.api), client.RbacAuthorizationV1Api(self.api)
        for account in ("gitops-deployer", "gitops-guardrails"):
            core.create_namespaced_service_account(namespace, {"metadata": {"name": account}})
        rbac.create_namespaced_role(namespace, {"metadata": {"name": "guardrails"}, "rules": [
            {"apiGroups": [""], "resources": ["limitranges", "resourcequotas"],
             "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}]})  # fmt: skip
        bindings = (
            ("gitops-deployer", "ClusterRole", "edit", "ServiceAccount", "gitops-deployer"),
            ("gitops-guardrails", "Role", "guardrails", "ServiceAccount", "gitops-guardrails"),
            ("opslab-gitops", "ClusterRole", "opslab:gitops-impersonate", "User", "opslab:gitops"),
        )
        for name, kind, role, subject_kind, subject in bindings:
            who: dict[str, str] = {"kind": subject_kind, "name": subject}
            who.update(
                {"namespace": namespace}
                if subject_kind == "ServiceAccount"
                else {"apiGroup": "rbac.authorization.k8s.io"}
            )
            rbac.create_namespaced_role_binding(namespace, {
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
                "subjects": [who]})  # fmt: skip

    def _push_app(self) -> None:
        source = self.lab_path / "app"
        assert (source / "src").is_dir() and (source / "tests").is_dir(), "app/src and app/tests are missing"
        shutil.copytree(source, self.app, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
        git(self.app, "init", "-q", "-b", "main")
        git(self.app, "add", "-A")
        git(self.app, "commit", "-q", "-m", "feat: the web service")
        git(self.app, "push", "-q", self.app_repo, "main")
        self.first = self.build("0.1.0", git(self.app, "rev-parse", "HEAD"))
        git(self.app, "tag", "-a", "v0.1.0", "-m", f"web 0.1.0: {self.image}@{self.first}")
        git(self.app, "push", "-q", self.app_repo, "v0.1.0")

    def build(self, version: str, revision: str, *, ready: bool = True) -> str:
        """The grader's own image of the app's src/ as ``image:version``; its digest."""
        layer = self.scratch / f"layer-{version}.tar"
        with tarfile.open(layer, "w") as tar:
            tar.add(self.app / "src", arcname=".")
        built = crane("append", "--new_layer", str(layer), "--new_tag", f"{self.image}:{version}")
        labels = ["--label", f"org.opencontainers.image.version={version}",
                  "--label", f"org.opencontainers.image.revision={revision}"]  # fmt: skip
        if not ready:
            labels += ["--label", "dev.opslab.ready=false"]
        pinned = crane("mutate", built, *labels, "--tag", f"{self.image}:{version}")
        return pinned.split("@", 1)[1]

    def _push_delivery(self) -> None:
        source = self.lab_path / "delivery"
        for environment in ENVIRONMENTS:
            assert (source / "overlays" / environment / "kustomization.yaml").is_file(), (
                f"delivery/overlays/{environment}/kustomization.yaml is missing"
            )
        shutil.copytree(source, self.delivery)
        for environment in ENVIRONMENTS:
            Overlay.pin(self.overlay_path(environment), self.image, self.first)
        git(self.delivery, "init", "-q", "-b", "main")
        git(self.delivery, "add", "-A")
        git(self.delivery, "commit", "-q", "-m", "delivery: three environments on web 0.1.0")
        git(self.delivery, "push", "-q", self.delivery_repo, "main")

    def overlay_path(self, environment: str, root: Path | None = None) -> Path:
        return (root or self.delivery) / "overlays" / environment / "kustomization.yaml"

    def cluster_objects(self, environment: str) -> list[dict[str, Any]]:
        """The learner's clusters/<env>.yaml, moved into the run's namespace and repository."""
        path = self.lab_path / "delivery" / "clusters" / f"{environment}.yaml"
        assert path.is_file(), f"delivery/clusters/{environment}.yaml is missing"
        objects = [o for o in yaml.safe_load_all(path.read_text()) if o]
        namespace = self.namespaces[environment]
        for obj in objects:
            obj["metadata"]["namespace"] = namespace
            spec = obj.setdefault("spec", {})
            if obj.get("kind") == "GitRepository":
                spec["url"] = self.delivery_repo
            elif obj.get("kind") == "Kustomization":
                spec["targetNamespace"] = namespace
                spec.get("sourceRef", {}).pop("namespace", None)
                for dependency in spec.get("dependsOn", []) or []:
                    dependency.pop("namespace", None)
        return objects

    def _apply_clusters(self) -> None:
        custom = client.CustomObjectsApi(self.api)
        for environment in ENVIRONMENTS:
            for obj in self.cluster_objects(environment):
                group, version, plural = SOURCE if obj.get("kind") == "GitRepository" else KUSTOMIZATION
                try:
                    custom.create_namespaced_custom_object(group, version, obj["metadata"]["namespace"], plural, obj)
                    if plural == SOURCE[2]:
                        self.sources.append((obj["metadata"]["namespace"], obj["metadata"]["name"]))
                except ApiException as exc:
                    self.problems.append(
                        f"clusters/{environment}.yaml: the API server refused {obj.get('kind')} "
                        f"{obj['metadata'].get('name')}: {json.loads(exc.body or '{}').get('message', exc.reason)}"
                    )

    def require_up(self) -> None:
        """Fail the check when the learner's cluster objects could not even be created."""
        assert not self.problems, self.problems[0]

    def tear_down(self) -> None:
        """Remove what the run left outside its namespaces (the run's sweep deletes those): its burn
        rates, its repositories on the Git server and its images' manifests in the registry."""
        for environment in self.namespaces:
            with contextlib.suppress(httpx.HTTPError):
                httpx.delete(self._burn_url(environment), timeout=10)
        state = os.environ.get("OPSLAB_STATE_DIR")
        if state:
            shutil.rmtree(Path(state) / "data" / "git" / self.run_id, ignore_errors=True)
        with contextlib.suppress(AssertionError):
            for tag in crane("ls", self.image).split():
                with contextlib.suppress(AssertionError):
                    crane("delete", f"{self.image}@{crane('digest', f'{self.image}:{tag}')}")

    # ------------------------------------------------------------------ the SLO feed

    def _burn_url(self, environment: str) -> str:
        return f"{self.pushgateway}/metrics/job/lab8-slo-{self.run_id}/namespace/{self.namespaces[environment]}"

    def clear_burn(self, environment: str) -> None:
        """Delete the environment's burn rate, and wait until Prometheus has none (no data)."""
        httpx.delete(self._burn_url(environment), timeout=10).raise_for_status()
        query = f'{BURN_METRIC}{{namespace="{self.namespaces[environment]}"}}'

        def gone() -> bool:
            return not httpx.get(f"{self.prometheus}/api/v1/query", params={"query": query}, timeout=10).json()[
                "data"]["result"]  # fmt: skip

        assert eventually(gone, 90), f"Prometheus kept the grader's burn rate for {environment} after it was deleted"

    def set_burn(self, environment: str, burn: float) -> None:
        """Push the environment's 1 h error-budget burn rate, and wait until Prometheus has it."""
        body = f'{BURN_METRIC}{{window="1h"}} {burn}\n'
        httpx.put(self._burn_url(environment), content=body, timeout=10).raise_for_status()
        query = f'{BURN_METRIC}{{namespace="{self.namespaces[environment]}",window="1h"}}'

        def scraped() -> bool:
            result = httpx.get(f"{self.prometheus}/api/v1/query", params={"query": query}, timeout=10).json()
            values = [float(r["value"][1]) for r in result["data"]["result"]]
            return values == [burn]

        assert eventually(scraped, 60), f"Prometheus did not scrape the grader's burn rate for {environment}"

    # ------------------------------------------------------------------ Git

    def pull(self) -> str:
        """The delivery repository's main as the grader's copy; its head."""
        git(self.delivery, "fetch", "-q", self.delivery_repo, "main")
        git(self.delivery, "reset", "-q", "--hard", "FETCH_HEAD")
        return git(self.delivery, "rev-parse", "HEAD")

    def commit_delivery(self, message: str) -> str:
        git(self.delivery, "add", "-A")
        git(self.delivery, "commit", "-q", "-m", message)
        git(self.delivery, "push", "-q", self.delivery_repo, "HEAD:main")
        head = git(self.delivery, "rev-parse", "HEAD")
        self.nudge()
        return head

    def commit_app(self, files: dict[str, str], message: str) -> tuple[str, str]:
        """Change the app, commit, push; (the commit before, the new commit)."""
        before = git(self.app, "rev-parse", "HEAD")
        for name, text in files.items():
            (self.app / name).parent.mkdir(parents=True, exist_ok=True)
            (self.app / name).write_text(text)
        git(self.app, "add", "-A")
        git(self.app, "commit", "-q", "--allow-empty", "-m", message)
        git(self.app, "push", "-q", self.app_repo, "main")
        return before, git(self.app, "rev-parse", "HEAD")

    def app_tags(self) -> set[str]:
        listed = git(self.app, "ls-remote", "--tags", self.app_repo)
        return {line.split("refs/tags/", 1)[1] for line in listed.splitlines() if "^{}" not in line}

    def nudge(self) -> None:
        """Ask every environment's GitRepository to fetch now (as `flux reconcile source git` does)."""
        custom = client.CustomObjectsApi(self.api)
        group, version, plural = SOURCE
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S") + f".{time.monotonic_ns() % 10**9}"
        for namespace, name in self.sources:
            with contextlib.suppress(ApiException):
                custom.patch_namespaced_custom_object(group, version, namespace, plural, name,
                                                      {"metadata": {"annotations": {REQUESTED_AT: stamp}}})  # fmt: skip

    # ------------------------------------------------------------------ the cluster

    def kustomization(self, environment: str, name: str = "web") -> dict[str, Any]:
        group, version, plural = KUSTOMIZATION
        found: dict[str, Any] = client.CustomObjectsApi(self.api).get_namespaced_custom_object(
            group, version, self.namespaces[environment], plural, name
        )
        return found

    def ready(self, environment: str, name: str = "web") -> dict[str, Any]:
        conditions = self.kustomization(environment, name).get("status", {}).get("conditions", [])
        return next((c for c in conditions if c["type"] == "Ready"), {})

    def running(self, environment: str) -> tuple[list[str], bool]:
        """The images Deployment web runs in the environment, and whether its rollout is complete."""
        try:
            deployment = client.AppsV1Api(self.api).read_namespaced_deployment("web", self.namespaces[environment])
        except ApiException:
            return [], False
        images = [c.image for c in deployment.spec.template.spec.containers]
        status, wanted = deployment.status, deployment.spec.replicas or 1
        done = (status.updated_replicas or 0) >= wanted and (status.available_replicas or 0) >= wanted and (
            (status.replicas or 0) == wanted) and (status.observed_generation or 0) >= deployment.metadata.generation  # fmt: skip
        return images, done

    def runs(self, environment: str, digest: str, timeout: float) -> bool:
        """Whether the environment comes to run ``image@digest`` with its rollout complete."""
        return bool(eventually(lambda: self.running(environment) == ([f"{self.image}@{digest}"], True), timeout))

    # ------------------------------------------------------------------ the learner's scripts

    def script(self, name: str, *args: str, stdin: str = "", timeout: float = 180) -> LearnerRun:
        """Run the learner's script from a copy of their lab, in the sandbox, with ``stdin``."""
        work = self.scratch / "lab"
        if not work.exists():
            shutil.copytree(self.lab_path, work, ignore=shutil.ignore_patterns("__pycache__", ".git"))
        feed = self.scratch / f"{name}.stdin"
        feed.write_text(stdin)
        command = ["/bin/sh", "-c", f'exec ./{name} "$@" < "{feed}"', name, *args]
        return run_learner(command, cwd=work, timeout=timeout, env=self.script_env(), what=name,
                           sandbox=self.sandbox)  # fmt: skip

    def release_on_push(self, message: str, files: dict[str, str] | None = None) -> tuple[LearnerRun, str]:
        """Commit to the app and run pipeline.sh as the post-receive hook would; (its run, the commit)."""
        before, after = self.commit_app(files or {}, message)
        done = self.script("pipeline.sh", stdin=f"{before} {after} refs/heads/main\n")
        self.nudge()
        return done, after


@contextlib.contextmanager
def environments(delivery: Delivery) -> Iterator[Delivery]:
    try:
        delivery.set_up()
        yield delivery
    finally:
        delivery.tear_down()
