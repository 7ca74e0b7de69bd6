"""opslab's GitOps reconciler (platform/go/gitops) as `up` runs it (user opslab:gitops, applying as
each namespace's gitops-deployer, cross-namespace references refused), with Flux's own CRDs and the
platform's Git server: a commit is applied, a hand edit reverted, a removed manifest pruned,
dependsOn holds back what depends on an unhealthy Kustomization, suspend stops reconciliation, and
a field outside the honoured subset is reported, not ignored."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from opslab.grading.fixtures import eventually
from opslab.runtime.lifecycle import Platform

pytestmark = pytest.mark.platform

SOURCE = ("source.toolkit.fluxcd.io", "v1", "gitrepositories")
KUSTOMIZATION = ("kustomize.toolkit.fluxcd.io", "v1", "kustomizations")
INTERVAL = "1s"
WAIT = 60.0


@dataclass
class GitOps:
    """The platform's reconciler and Git server, as this module's tests use them."""

    api: client.ApiClient
    git_url: str
    work: Path
    opted: set[str] = field(default_factory=set)

    def opt_in(self, namespace: str) -> None:
        """Let the reconciler act in ``namespace`` as its gitops-deployer account (ClusterRole edit),
        as docs/gitops.md tells a namespace to."""
        if namespace in self.opted:
            return
        core, rbac = client.CoreV1Api(self.api), client.RbacAuthorizationV1Api(self.api)
        core.create_namespaced_service_account(namespace, {"metadata": {"name": "gitops-deployer"}})
        for name, role, subject in (
            ("gitops-deployer", "edit", {"kind": "ServiceAccount", "name": "gitops-deployer", "namespace": namespace}),
            ("opslab-gitops", "opslab:gitops-impersonate",
             {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "opslab:gitops"}),
        ):  # fmt: skip
            rbac.create_namespaced_role_binding(namespace, {
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": [subject]})  # fmt: skip
        self.opted.add(namespace)

    def repository(self, name: str) -> Repo:
        return Repo(self.work / name, f"{self.git_url}/{name}.git")

    def create(self, namespace: str, kind: tuple[str, str, str], name: str, spec: dict[str, Any]) -> None:
        self.opt_in(namespace)
        group, version, plural = kind
        body = {"apiVersion": f"{group}/{version}", "kind": "GitRepository" if kind == SOURCE else "Kustomization",
                "metadata": {"name": name, "namespace": namespace}, "spec": spec}  # fmt: skip
        client.CustomObjectsApi(self.api).create_namespaced_custom_object(group, version, namespace, plural, body)

    def patch(self, namespace: str, name: str, spec: dict[str, Any]) -> None:
        group, version, plural = KUSTOMIZATION
        client.CustomObjectsApi(self.api).patch_namespaced_custom_object(
            group, version, namespace, plural, name, {"spec": spec}
        )

    def get(self, namespace: str, kind: tuple[str, str, str], name: str) -> dict[str, Any]:
        group, version, plural = kind
        found: dict[str, Any] = client.CustomObjectsApi(self.api).get_namespaced_custom_object(
            group, version, namespace, plural, name
        )
        return found

    def ready(self, namespace: str, kind: tuple[str, str, str], name: str) -> dict[str, Any]:
        """The object's Ready condition (an empty dict before there is one)."""
        conditions = self.get(namespace, kind, name).get("status", {}).get("conditions", [])
        return next((c for c in conditions if c["type"] == "Ready"), {})

    def source(self, namespace: str, name: str, *, path: str = "./app", **extra: Any) -> None:
        """A GitRepository for repository ``name`` and a Kustomization of ``path`` in it, into ``namespace``."""
        self.create(namespace, SOURCE, name, {"interval": INTERVAL, "url": f"{self.git_url}/{name}.git",
                                              "ref": {"branch": "main"}})  # fmt: skip
        self.kustomization(namespace, name, name, path=path, **extra)

    def kustomization(self, namespace: str, name: str, source: str, *, path: str = "./app", **extra: Any) -> None:
        """A Kustomization of ``path`` in GitRepository ``source``, pruning, into ``namespace``."""
        spec = {"interval": INTERVAL, "path": path, "prune": True, "targetNamespace": namespace,
                "sourceRef": {"kind": "GitRepository", "name": source}, **extra}  # fmt: skip
        self.create(namespace, KUSTOMIZATION, name, spec)


class Repo:
    """A working copy that pushes to the Git server."""

    def __init__(self, path: Path, url: str) -> None:
        self.path, self.url = path, url
        path.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        done = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args], cwd=self.path,
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert done.returncode == 0, f"git {args[0]}: {done.stderr}"
        return done.stdout.strip()

    def commit(self, files: dict[str, Any], message: str) -> str:
        """Write (or, for None, remove) ``files``, commit, push; the Flux revision of the commit."""
        for name, content in files.items():
            target = self.path / name
            if content is None:
                target.unlink()
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(yaml.safe_dump_all(content) if isinstance(content, list) else yaml.safe_dump(content))
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        self.git("push", "-q", self.url, "main")
        return f"main@sha1:{self.git('rev-parse', 'HEAD')}"


def config_map(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def never_ready() -> dict[str, Any]:
    """A Deployment whose pod no node takes: its rollout never completes."""
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "never-ready"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "never-ready"}},
                 "template": {"metadata": {"labels": {"app": "never-ready"}},
                              "spec": {"nodeSelector": {"opslab.dev/no-such-node": "x"},
                                       "containers": [{"name": "app", "image": "shop/app:1.0.0"}]}}},
    }  # fmt: skip


@pytest.fixture(scope="module")
def gitops(platform: Platform, api: client.ApiClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitOps]:
    """The platform's own GitOps reconciler and Git server (`up` starts them)."""
    ports = platform.settings.ports
    assert httpx.get(f"http://127.0.0.1:{ports.gitops}/readyz", timeout=5).status_code == 200
    used = GitOps(api, f"http://127.0.0.1:{ports.git_server}", tmp_path_factory.mktemp("gitops") / "clones")
    yield used
    # The tests' namespaces are gone or going: their Kustomizations wait on the reconciler's
    # finalizer; one left behind would hold its namespace in Terminating.
    group, version, plural = KUSTOMIZATION
    custom = client.CustomObjectsApi(api)

    def left() -> list[str]:
        items = custom.list_cluster_custom_object(group, version, plural)["items"]
        return [f"{k['metadata']['namespace']}/{k['metadata']['name']}: {k.get('status', {}).get('conditions')}"
                for k in items if k["metadata"]["namespace"] in used.opted]  # fmt: skip

    assert eventually(lambda: not left(), WAIT), f"a deleted namespace's Kustomization kept its finalizer: {left()}"


def test_a_commit_is_applied_a_hand_edit_reverted_and_a_removed_manifest_pruned(
    gitops: GitOps, api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api)
    repo = gitops.repository(f"apply-{uuid.uuid4().hex[:6]}")
    revision = repo.commit({"app/settings.yaml": config_map("settings", greeting="hello"),
                            "app/extra.yaml": config_map("extra", a="b")}, "first")  # fmt: skip
    gitops.source(namespace, repo.path.name)

    def applied(rev: str) -> bool:
        ks = gitops.get(namespace, KUSTOMIZATION, repo.path.name)
        ready = gitops.ready(namespace, KUSTOMIZATION, repo.path.name)
        return ks.get("status", {}).get("lastAppliedRevision") == rev and ready.get("status") == "True"

    assert eventually(lambda: applied(revision), WAIT), gitops.ready(namespace, KUSTOMIZATION, repo.path.name)
    settings = core.read_namespaced_config_map("settings", namespace)
    assert settings.data == {"greeting": "hello"}
    assert settings.metadata.labels["kustomize.toolkit.fluxcd.io/name"] == repo.path.name
    inventory = gitops.get(namespace, KUSTOMIZATION, repo.path.name)["status"]["inventory"]["entries"]
    assert {e["id"] for e in inventory} == {f"{namespace}_settings__ConfigMap", f"{namespace}_extra__ConfigMap"}

    revision = repo.commit({"app/settings.yaml": config_map("settings", greeting="hi")}, "second")
    assert eventually(lambda: applied(revision), WAIT)
    assert core.read_namespaced_config_map("settings", namespace).data == {"greeting": "hi"}

    core.patch_namespaced_config_map("settings", namespace, {"data": {"greeting": "edited by hand"}})
    reverted = eventually(lambda: core.read_namespaced_config_map("settings", namespace).data == {"greeting": "hi"},
                          WAIT)  # fmt: skip
    assert reverted, "a hand edit in the cluster was not reverted to what Git says"

    revision = repo.commit({"app/extra.yaml": None}, "remove extra")
    assert eventually(lambda: applied(revision), WAIT)

    def pruned() -> bool:
        try:
            core.read_namespaced_config_map("extra", namespace)
        except ApiException as exc:
            return exc.status == 404
        return False

    assert eventually(pruned, WAIT), "a manifest removed from Git was not pruned"
    assert core.read_namespaced_config_map("settings", namespace).data == {"greeting": "hi"}


def test_depends_on_waits_for_a_healthy_dependency_and_a_failed_health_check_says_so(
    gitops: GitOps, api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api)
    name = f"deps-{uuid.uuid4().hex[:6]}"
    repo = gitops.repository(name)
    repo.commit({"base/deployment.yaml": never_ready(), "after/settings.yaml": config_map("after", order="second")},
                "a base that never becomes healthy")  # fmt: skip
    gitops.source(namespace, name, path="./base", wait=True, timeout="4s")
    gitops.kustomization(namespace, "after", name, path="./after", dependsOn=[{"name": name}])

    def reason(ks: str) -> str:
        return str(gitops.ready(namespace, KUSTOMIZATION, ks).get("reason", ""))

    assert eventually(lambda: reason(name) == "HealthCheckFailed", WAIT), gitops.ready(namespace, KUSTOMIZATION, name)
    assert "never-ready" in gitops.ready(namespace, KUSTOMIZATION, name)["message"]
    assert eventually(lambda: reason("after") == "DependencyNotReady", WAIT)
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("after", namespace)
    assert missing.value.status == 404, "a Kustomization was applied before the one it depends on was healthy"

    repo.commit({"base/deployment.yaml": None, "base/settings.yaml": config_map("base", order="first")}, "fix the base")
    assert eventually(lambda: reason(name) == "ReconciliationSucceeded", WAIT)
    assert eventually(lambda: reason("after") == "ReconciliationSucceeded", WAIT)
    assert core.read_namespaced_config_map("after", namespace).data == {"order": "second"}


def test_suspend_stops_reconciliation_and_an_unhonoured_field_a_foreign_source_or_a_path_out_is_reported(
    gitops: GitOps, api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api)
    name = f"suspend-{uuid.uuid4().hex[:6]}"
    repo = gitops.repository(name)
    first = repo.commit({"app/settings.yaml": config_map("settings", value="one")}, "one")
    gitops.source(namespace, name)
    assert eventually(lambda: gitops.get(namespace, KUSTOMIZATION, name).get("status", {}).get("lastAppliedRevision")
                      == first, WAIT)  # fmt: skip
    gitops.patch(namespace, name, {"suspend": True})
    second = repo.commit({"app/settings.yaml": config_map("settings", value="two")}, "two")
    fetched = eventually(lambda: gitops.get(namespace, SOURCE, name)["status"]["artifact"]["revision"] == second, WAIT)
    assert fetched, "the GitRepository did not fetch the new commit"
    # A suspended Kustomization is not reconciled: four of its intervals later nothing changed.
    assert not eventually(lambda: core.read_namespaced_config_map("settings", namespace).data["value"] == "two", 4)
    assert gitops.get(namespace, KUSTOMIZATION, name)["status"]["lastAppliedRevision"] == first
    gitops.patch(namespace, name, {"suspend": False})
    assert eventually(lambda: core.read_namespaced_config_map("settings", namespace).data["value"] == "two", WAIT)

    gitops.kustomization(namespace, "post-build", name, postBuild={"substitute": {"x": "y"}})
    ready = eventually(lambda: gitops.ready(namespace, KUSTOMIZATION, "post-build").get("reason") == "UnsupportedField",
                       WAIT)  # fmt: skip
    assert ready, gitops.ready(namespace, KUSTOMIZATION, "post-build")
    condition = gitops.ready(namespace, KUSTOMIZATION, "post-build")
    assert condition["status"] == "False" and "spec.postBuild" in condition["message"]
    stalled = [c for c in gitops.get(namespace, KUSTOMIZATION, "post-build")["status"]["conditions"]
               if c["type"] == "Stalled"]  # fmt: skip
    assert stalled and stalled[0]["status"] == "True"

    gitops.create(namespace, SOURCE, "over-ssh", {"interval": INTERVAL, "url": "ssh://git@127.0.0.1/app.git"})
    over_ssh = eventually(lambda: gitops.ready(namespace, SOURCE, "over-ssh").get("reason") == "UnsupportedField", WAIT)
    assert over_ssh and "spec.url" in gitops.ready(namespace, SOURCE, "over-ssh")["message"]

    gitops.kustomization(namespace, "elsewhere", name, sourceRef={"kind": "GitRepository", "name": name,
                                                                  "namespace": "default"})  # fmt: skip
    denied = eventually(
        lambda: gitops.ready(namespace, KUSTOMIZATION, "elsewhere").get("reason") == "AccessDenied", WAIT
    )
    assert denied, gitops.ready(namespace, KUSTOMIZATION, "elsewhere")

    gitops.kustomization(namespace, "outside", name, path="../../gitrepository")
    escaped = eventually(lambda: gitops.ready(namespace, KUSTOMIZATION, "outside").get("reason") == "BuildFailed", WAIT)
    assert escaped and "leaves the source" in gitops.ready(namespace, KUSTOMIZATION, "outside")["message"]


def test_prune_disabled_is_kept_and_an_empty_commit_or_a_symlink_still_applies(
    gitops: GitOps, api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api)
    name = f"keep-{uuid.uuid4().hex[:6]}"
    repo = gitops.repository(name)
    kept = config_map("kept", a="b")
    kept["metadata"]["annotations"] = {"kustomize.toolkit.fluxcd.io/prune": "disabled"}
    (repo.path / "docs").symlink_to("app")
    first = repo.commit({"app/settings.yaml": config_map("settings", v="1"), "app/kept.yaml": kept}, "first")
    gitops.source(namespace, name)

    def applied(rev: str) -> bool:
        status = gitops.get(namespace, KUSTOMIZATION, name).get("status", {})
        ready = gitops.ready(namespace, KUSTOMIZATION, name)
        return status.get("lastAppliedRevision") == rev and ready.get("status") == "True"

    assert eventually(lambda: applied(first), WAIT), gitops.ready(namespace, KUSTOMIZATION, name)
    # Applied and pruned in one reconciliation: once the revision is applied, the prune is done.
    second = repo.commit({"app/kept.yaml": None}, "remove kept")
    assert eventually(lambda: applied(second), WAIT), gitops.ready(namespace, KUSTOMIZATION, name)
    assert core.read_namespaced_config_map("kept", namespace).data == {"a": "b"}, "prune: disabled was pruned"
    # An empty commit has the same content: the artifact must still point at a checkout that exists.
    repo.git("commit", "-q", "--allow-empty", "-m", "empty")
    repo.git("push", "-q", repo.url, "main")
    third = f"main@sha1:{repo.git('rev-parse', 'HEAD')}"
    assert eventually(lambda: applied(third), WAIT), gitops.ready(namespace, KUSTOMIZATION, name)


def test_a_service_account_confines_what_a_kustomization_may_apply(
    gitops: GitOps, api: client.ApiClient, namespace: str
) -> None:
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    name = f"tenant-{uuid.uuid4().hex[:6]}"
    repo = gitops.repository(name)
    revision = repo.commit({"app/settings.yaml": config_map("settings", v="1")}, "first")
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "deployer"}})
    gitops.source(namespace, name, serviceAccountName="deployer")

    def message() -> str:
        return str(gitops.ready(namespace, KUSTOMIZATION, name).get("message", ""))

    assert eventually(lambda: "forbidden" in message(), WAIT), message()
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("settings", namespace)
    assert missing.value.status == 404, "the Kustomization applied what its service account may not"
    rules = [{"apiGroups": [""], "resources": ["configmaps"],
              "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"]}]  # fmt: skip
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "deployer"}, "rules": rules})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "deployer"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "deployer"},
        "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": namespace}]})  # fmt: skip
    status = lambda: gitops.get(namespace, KUSTOMIZATION, name).get("status", {})  # noqa: E731
    assert eventually(lambda: status().get("lastAppliedRevision") == revision, WAIT), message()
    assert core.read_namespaced_config_map("settings", namespace).data == {"v": "1"}


def waiting_on_a_bad_release(gitops: GitOps, namespace: str, name: str) -> Repo:
    """Repository ``name`` with a release that never becomes ready, its Kustomization (5 min health
    timeout) in ``namespace``, returned once the health wait for that release has begun."""
    repo = gitops.repository(name)
    bad = repo.commit({"app/deployment.yaml": never_ready()}, "a release that never becomes ready")
    gitops.source(namespace, name, wait=True, timeout="5m")
    status = lambda: gitops.get(namespace, KUSTOMIZATION, name).get("status", {})  # noqa: E731
    assert eventually(lambda: status().get("lastAttemptedRevision") == bad, WAIT)
    return repo


def test_a_health_wait_ends_when_a_fix_is_pushed_not_at_its_timeout(
    gitops: GitOps, api: client.ApiClient, namespace: str
) -> None:
    """A bad release waits for health for its whole timeout (5 min here); a revert pushed meanwhile
    must not wait that long: the wait is canceled on the source's new revision."""
    name = f"cancel-{uuid.uuid4().hex[:6]}"
    repo = waiting_on_a_bad_release(gitops, namespace, name)
    status = lambda: gitops.get(namespace, KUSTOMIZATION, name).get("status", {})  # noqa: E731
    ready = gitops.ready(namespace, KUSTOMIZATION, name)
    assert ready.get("status") == "Unknown" and "in progress" in ready.get("message", ""), (
        f"during the health wait the status must say it is in progress, not look settled: {ready}"
    )
    fixed = repo.commit({"app/deployment.yaml": None, "app/settings.yaml": config_map("settings", v="2")}, "revert")
    assert eventually(lambda: status().get("lastAppliedRevision") == fixed, WAIT), gitops.ready(
        namespace, KUSTOMIZATION, name
    )
    reasons = [e.reason for e in client.CoreV1Api(api).list_namespaced_event(namespace).items]
    assert "HealthCheckCanceled" in reasons, reasons


def test_a_kustomization_deleted_during_its_health_wait_is_released_at_once(gitops: GitOps, namespace: str) -> None:
    """Deleting a Kustomization (or its namespace) while it waits 5 min for a release that never
    becomes ready must not hold its finalizer until the wait times out."""
    name = f"deleted-{uuid.uuid4().hex[:6]}"
    waiting_on_a_bad_release(gitops, namespace, name)
    group, version, plural = KUSTOMIZATION
    custom = client.CustomObjectsApi(gitops.api)
    custom.delete_namespaced_custom_object(group, version, namespace, plural, name)

    def released() -> bool:
        try:
            gitops.get(namespace, KUSTOMIZATION, name)
        except ApiException as error:
            return error.status == 404
        return False

    left = gitops.ready(namespace, KUSTOMIZATION, name) if not eventually(released, 30.0) else None
    assert left is None, f"still there 30 s after its deletion, waiting on its health check: {left}"
