"""Lab 8 checks: environments from Git, the pipeline to dev, promotion through the gate, a bad release
held back and reverted in Git, Git as the source of truth, and the delivery policy.

Every check makes its own starting point (a release of the grader's where it needs one), so each
can be graded alone; they share the run's three environments (see support.py)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client import ApiClient
from support import ENVIRONMENTS, HEALTHY_BURN, Delivery, Overlay, crane, environments, git, tool

from opslab.grading.fixtures import env_or_fail, eventually
from opslab.grading.rubric import check
from opslab.grading.sandbox import Sandbox

HELDOUT = Path(__file__).parent / "heldout"
SETTLE = 150.0
LIMITS = "/spec/template/spec/containers/0/resources/limits"
"""What the grader's unsafe edit of staging removes (every policy asks for limits)."""
"""How long an environment may take to apply a commit and finish its rollout (the grader asks the
GitRepositories to fetch at once, as `flux reconcile source git` does)."""


@pytest.fixture(scope="session")
def delivery(
    kube_api: ApiClient, run_id: str, lab_path: Path, scratch: Path, sandbox: Sandbox, learner_kubeconfig: Path
) -> Iterator[Delivery]:
    made = Delivery(
        api=kube_api, run_id=run_id, lab_path=lab_path, scratch=scratch, sandbox=sandbox, kubeconfig=learner_kubeconfig,
        git_url=env_or_fail("OPSLAB_GIT_URL"), registry=env_or_fail("OPSLAB_REGISTRY"),
        prometheus=env_or_fail("OPSLAB_PROMETHEUS_URL"), pushgateway=env_or_fail("OPSLAB_PUSHGATEWAY_URL"),
    )  # fmt: skip
    with environments(made) as ready:
        yield ready


def seconds(duration: str) -> float:
    """A Flux duration (1m30s, 10s, 1h) in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration or "")
    unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * unit[u] for n, u in parts) if parts else 0.0


def release(delivery: Delivery, environment: str, version: str, *, ready: bool = True) -> tuple[str, str]:
    """The grader's own release of ``version`` into ``environment`` (as pipeline.sh would for dev):
    (its digest, its delivery commit)."""
    digest = delivery.build(version, f"grader-{version}", ready=ready)
    delivery.pull()
    Overlay.pin(delivery.overlay_path(environment), delivery.image, digest)
    return digest, delivery.commit_delivery(f"release({environment}): web {version}")


# ---------------------------------------------------------------------- environments


@check(points=3, section="Environments", timeout=240, hint="clusters/<env>.yaml: a GitRepository of the delivery "
       "repository and Kustomizations with prune: true, an interval of at most 1m, and for the app wait: true (or "
       "healthChecks) with a timeout and dependsOn the guardrails; each overlay pins web by digest.")  # fmt: skip
def test_the_environments_come_up_from_git(delivery: Delivery) -> None:
    """every environment is reconciled from Git: the app waits for health, depends on the guardrails, prunes"""
    delivery.require_up()
    for environment in ENVIRONMENTS:
        kustomizations = {o["metadata"]["name"]: o["spec"] for o in delivery.cluster_objects(environment)
                          if o.get("kind") == "Kustomization"}  # fmt: skip
        assert "web" in kustomizations, f"clusters/{environment}.yaml has no Kustomization named web"
        web = kustomizations["web"]
        assert web.get("prune") is True, f"{environment}: Kustomization web must prune what leaves Git (prune: true)"
        assert web.get("wait") is True or web.get("healthChecks"), (
            f"{environment}: Kustomization web does not wait for health (wait: true): a release that never becomes "
            "ready would look applied"
        )
        assert 0 < seconds(web.get("interval", "")) <= 60, f"{environment}: web's interval must be at most 1m"
        assert web.get("dependsOn"), f"{environment}: web must depend on the guardrails (dependsOn)"
        for name, spec in kustomizations.items():
            assert spec.get("prune") is True, f"{environment}: Kustomization {name} does not prune"
    for environment in ENVIRONMENTS:
        came_up = delivery.runs(environment, delivery.first, SETTLE)
        assert came_up, (
            f"{environment} did not come to run web 0.1.0 from Git within {SETTLE:.0f} s; Kustomization web says: "
            f"{delivery.ready(environment).get('message', 'no condition yet')}"
        )


# ---------------------------------------------------------------------- the pipeline


@check(points=5, section="Pipeline", timeout=420, hint="pipeline.sh: read '<old> <new> <ref>' lines, clone APP_REPO "
       "at the pushed commit, run the tests, ask semantic-release for the next version (stop if it is already "
       "tagged), crane append/mutate and push IMAGE:<version>, tag v<version>, then pin overlays/dev to "
       "IMAGE@sha256:... (digest:, never newTag) and push the delivery repository.")  # fmt: skip
def test_a_commit_reaches_dev_versioned_and_pinned_by_digest(delivery: Delivery) -> None:
    """a feat: commit reaches dev as the next minor version, pinned by digest; fix: is a patch; chore: releases nothing"""
    delivery.require_up()
    before = {env: delivery.running(env)[0] for env in ("staging", "prod")}
    tags = delivery.app_tags()
    done, commit = delivery.release_on_push("feat: say goodbye", {"src/web/farewell.py": "FAREWELL = 'bye'\n"})
    assert done.returncode == 0, f"pipeline.sh failed on a feat: commit: {done.tail()}"
    new = sorted(delivery.app_tags() - tags)
    assert len(new) == 1, f"pipeline.sh tagged {new or 'nothing'} for one feat: commit after v0.1.0"
    version = new[0].removeprefix("v")
    assert version == "0.2.0", f"a feat: commit after v0.1.0 is 0.2.0 (semantic versioning), not {version}"
    delivery.pull()
    pinned = Overlay.read(delivery.overlay_path("dev"))
    assert pinned.digest.startswith("sha256:") and not pinned.tag, (
        f"overlays/dev pins web as {pinned.name}:{pinned.tag or '?'}@{pinned.digest or '?'}: pin the digest, not a tag"
    )
    assert pinned.name == delivery.image, f"overlays/dev names {pinned.name}, not the image IMAGE ({delivery.image})"
    assert crane("digest", f"{delivery.image}:{version}") == pinned.digest, (
        f"overlays/dev pins {pinned.digest}, but {delivery.image}:{version} in the registry is another image"
    )
    assert pinned.digest != delivery.first, "overlays/dev still pins the first release"
    assert delivery.runs("dev", pinned.digest, SETTLE), (
        f"dev did not come to run the new release within {SETTLE:.0f} s: {delivery.ready('dev').get('message')}"
    )
    for environment, images in before.items():
        assert delivery.running(environment)[0] == images, f"a release to dev changed {environment}"
        assert Overlay.read(delivery.overlay_path(environment)).digest != pinned.digest, (
            f"pipeline.sh changed overlays/{environment}: it releases to dev only"
        )
    labels = json.loads(crane("config", f"{delivery.image}@{pinned.digest}"))["config"].get("Labels") or {}
    assert labels.get("org.opencontainers.image.revision") == commit, (
        f"the released image's org.opencontainers.image.revision is {labels.get('org.opencontainers.image.revision')}, "
        f"not the pushed commit {commit}: build what was pushed, and say so in the image"
    )

    done, _ = delivery.release_on_push("fix: a typo in the farewell", {"src/web/farewell.py": "FAREWELL = 'bye!'\n"})
    assert done.returncode == 0, f"pipeline.sh failed on a fix: commit: {done.tail()}"
    assert "v0.2.1" in delivery.app_tags(), f"a fix: after 0.2.0 is 0.2.1; tags now: {sorted(delivery.app_tags())}"
    tags, head = delivery.app_tags(), delivery.pull()
    done, _ = delivery.release_on_push("chore: tidy the tests")
    assert done.returncode == 0, f"pipeline.sh failed on a chore: commit (it releases nothing): {done.tail()}"
    assert delivery.app_tags() == tags, "a chore: commit was released: only fix:, feat: and breaking changes are"
    assert delivery.pull() == head, "a chore: commit changed the delivery repository"


# ---------------------------------------------------------------------- promotion


@check(points=6, section="Promotion", timeout=600, hint="promote.sh FROM TO: refuse anything but dev->staging and "
       "staging->prod; refuse when FROM's Kustomization web is not Ready at Git's head or its burn rate (Prometheus, "
       "web_error_budget_burn_rate{namespace,window='1h'}) is >= BURN_LIMIT or missing; render TO with the release "
       "and opa eval policy/ (refuse on any deny); for prod require approvals/prod/<version>.yaml naming the digest; then commit TO.")  # fmt: skip
def test_promotion_goes_through_the_gate(delivery: Delivery) -> None:
    """releases go dev -> staging -> prod only through the gate: health, error budget, policy, prod approval"""
    delivery.require_up()
    digest, _ = release(delivery, "dev", "0.3.0")
    assert delivery.runs("dev", digest, SETTLE), (
        f"the grader's release 0.3.0 did not reach dev: {delivery.ready('dev')}"
    )
    approval = delivery.delivery / "approvals" / "prod" / "0.3.0.yaml"
    approval.parent.mkdir(parents=True, exist_ok=True)
    approval.write_text(f"approved_by: release-manager@example.org\nreason: CAB-1234\ndigest: {digest}\n")
    applied_in_staging(delivery, delivery.commit_delivery("approve: web 0.3.0 for prod"))
    head = delivery.pull()
    staging = delivery.running("staging")[0]

    # Approved for prod already, so only the one-step rule can stop this.
    skipped = delivery.script("promote.sh", "dev", "prod")
    assert skipped.returncode != 0 and delivery.pull() == head, "promote.sh dev prod skipped staging"

    delivery.set_burn("dev", 4.0)
    burning = delivery.script("promote.sh", "dev", "staging")
    assert burning.returncode != 0 and delivery.pull() == head, (
        "promote.sh promoted while dev's error budget burned 4x (web_error_budget_burn_rate): the SLO gate is missing"
    )
    delivery.clear_burn("dev")
    unknown = delivery.script("promote.sh", "dev", "staging")
    assert unknown.returncode != 0 and delivery.pull() == head, (
        "promote.sh promoted with no burn rate for dev in Prometheus: an SLO nobody measures is not a healthy one"
    )
    delivery.set_burn("dev", HEALTHY_BURN)
    assert delivery.running("staging")[0] == staging

    # staging made unsafe by hand in Git (a container without limits): the release rendered into it
    # must fail the policy, whatever else is healthy.
    overlay = delivery.overlay_path("staging")
    clean = overlay.read_text()
    unsafe = yaml.safe_load(clean)
    unsafe.setdefault("patches", []).append({"target": {"kind": "Deployment", "name": "web"},
                                             "patch": f"- op: remove\n  path: {LIMITS}\n"})  # fmt: skip
    overlay.write_text(yaml.safe_dump(unsafe, sort_keys=False))
    applied_in(delivery, "dev", delivery.commit_delivery("staging: web without limits (the grader's unsafe edit)"))
    head = delivery.pull()
    unchecked = delivery.script("promote.sh", "dev", "staging")
    assert unchecked.returncode != 0 and delivery.pull() == head, (
        "promote.sh promoted into a staging whose rendered manifests your policy denies (a container without limits): "
        "render the target with the release and refuse when opa eval of policy/ denies anything"
    )
    overlay.write_text(clean)
    applied_in(delivery, "dev", delivery.commit_delivery("staging: limits back"))
    delivery.pull()

    promoted = delivery.script("promote.sh", "dev", "staging")
    assert promoted.returncode == 0, f"promote.sh dev staging refused a healthy release: {promoted.tail()}"
    delivery.nudge()
    delivery.pull()
    assert Overlay.read(delivery.overlay_path("staging")).digest == digest, (
        "promote.sh did not pin staging to the release"
    )
    assert delivery.runs("staging", digest, SETTLE), (
        f"staging did not come to run the release: {delivery.ready('staging')}"
    )

    approval.unlink()
    applied_in_staging(delivery, delivery.commit_delivery("withdraw the approval of web 0.3.0"))
    head = delivery.pull()
    unapproved = delivery.script("promote.sh", "staging", "prod")
    assert unapproved.returncode != 0 and delivery.pull() == head, "promote.sh promoted to prod without an approval"
    approval.write_text(f"approved_by: release-manager@example.org\nreason: CAB-1235\ndigest: {digest}\n")
    applied_in_staging(delivery, delivery.commit_delivery("approve: web 0.3.0 for prod, again"))
    approved = delivery.script("promote.sh", "staging", "prod")
    assert approved.returncode == 0, f"promote.sh staging prod refused an approved, healthy release: {approved.tail()}"
    delivery.nudge()
    assert delivery.runs("prod", digest, SETTLE), (
        f"prod did not come to run the approved release: {delivery.ready('prod')}"
    )


def applied_in(delivery: Delivery, environment: str, commit: str) -> None:
    """Wait until ``environment`` applied ``commit``: the gate asks for the environment promoted from
    to be Ready at Git's head, which a commit to the delivery repository (an approval) moves."""

    def applied() -> bool:
        status = delivery.kustomization(environment).get("status", {})
        return str(status.get("lastAppliedRevision", "")).endswith(commit)

    assert eventually(applied, SETTLE), f"{environment} did not apply the delivery repository's new commit"


def applied_in_staging(delivery: Delivery, commit: str) -> None:
    applied_in(delivery, "staging", commit)


# ---------------------------------------------------------------------- rollback


@check(points=6, section="Rollback", timeout=420, hint="A release that never becomes ready must leave web not Ready "
       "(wait: true) and promote.sh must refuse it; rollback.sh ENV reverts ENV's last release commit with git "
       "revert and pushes: the reconciler applies the revert. kubectl changes are undone by the reconciler.")  # fmt: skip
def test_a_bad_release_is_held_back_and_reverted_in_git(delivery: Delivery) -> None:
    """a release that fails readiness is not promoted, and the rollback is a git revert the reconciler applies"""
    delivery.require_up()
    good, _ = release(delivery, "dev", "0.4.0")
    assert delivery.runs("dev", good, SETTLE), f"the grader's release 0.4.0 did not reach dev: {delivery.ready('dev')}"
    staging = delivery.running("staging")[0]
    bad, bad_commit = release(delivery, "dev", "0.4.1", ready=False)

    def holding() -> bool:
        images, _ = delivery.running("dev")
        return images == [f"{delivery.image}@{bad}"]

    assert eventually(holding, SETTLE), "dev never tried the bad release 0.4.1"
    assert not eventually(lambda: delivery.ready("dev").get("status") == "True", 10), (
        "Kustomization web in dev says Ready while its release never becomes ready: it does not wait for health"
    )
    head = delivery.pull()
    refused = delivery.script("promote.sh", "dev", "staging")
    assert refused.returncode != 0 and delivery.pull() == head, "promote.sh promoted a release that is not ready"
    assert delivery.running("staging")[0] == staging

    rolled = delivery.script("rollback.sh", "dev")
    assert rolled.returncode == 0, f"rollback.sh dev failed: {rolled.tail()}"
    head = delivery.pull()
    assert head != bad_commit and git(delivery.delivery, "rev-parse", "HEAD~1") == bad_commit, (
        "rollback.sh did not add a commit on top of the bad release: roll back in Git (git revert), not around it"
    )
    assert Overlay.read(delivery.overlay_path("dev")).digest == good, (
        "after rollback.sh, overlays/dev does not pin 0.4.0"
    )
    reverted = git(delivery.delivery, "diff", "--name-only", "HEAD~2", "HEAD")
    assert reverted == "", f"rollback.sh's commit is not an exact revert of the release: it leaves {reverted} changed"
    delivery.nudge()
    assert delivery.runs("dev", good, 90), f"dev did not return to 0.4.0 after the revert: {delivery.ready('dev')}"


# ---------------------------------------------------------------------- Git is the source of truth


@check(points=3, section="Drift", timeout=300, hint="prune: true removes what leaves Git; an interval of at most 1m "
       "reverts a hand edit; never rely on kubectl to change an environment.")  # fmt: skip
def test_git_is_the_source_of_truth(delivery: Delivery, kube_api: ApiClient) -> None:
    """a hand edit in dev is reverted to what Git says, and a manifest removed from Git is pruned"""
    delivery.require_up()
    apps, core = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api)
    namespace = delivery.namespaces["dev"]
    wanted = apps.read_namespaced_deployment("web", namespace).spec.replicas
    apps.patch_namespaced_deployment("web", namespace, {"spec": {"replicas": wanted + 3}})
    reverted = eventually(lambda: apps.read_namespaced_deployment("web", namespace).spec.replicas == wanted, 90)
    assert reverted, f"a hand edit (replicas {wanted + 3}) was not reverted to Git's {wanted} within 90 s"

    delivery.pull()
    extra = delivery.delivery / "overlays" / "dev" / "grader-extra.yaml"
    extra.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "grader-extra"},
                                     "data": {"a": "b"}}))  # fmt: skip
    overlay = delivery.overlay_path("dev")
    document = yaml.safe_load(overlay.read_text())
    document["resources"] = [*document.get("resources", []), "grader-extra.yaml"]
    overlay.write_text(yaml.safe_dump(document, sort_keys=False))
    delivery.commit_delivery("dev: an extra ConfigMap")

    def exists() -> bool:
        try:
            core.read_namespaced_config_map("grader-extra", namespace)
        except client.ApiException:
            return False
        return True

    assert eventually(exists, SETTLE), "the grader's ConfigMap added in Git never reached dev"
    extra.unlink()
    document["resources"] = [r for r in document["resources"] if r != "grader-extra.yaml"]
    overlay.write_text(yaml.safe_dump(document, sort_keys=False))
    delivery.commit_delivery("dev: the extra ConfigMap goes")
    assert eventually(lambda: not exists(), SETTLE), "a manifest removed from Git was not pruned from dev"


# ---------------------------------------------------------------------- policy


def opa_deny(lab_path: Path, documents: list[dict[str, object]]) -> list[str]:
    done = subprocess.run([tool("opa"), "eval", "--format", "json", "-d", str(lab_path / "policy"),
                           "--stdin-input", "data.delivery.deny"], input=json.dumps(documents), capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, f"opa eval of policy/ failed: {done.stderr.strip()[:300]}"
    result = json.loads(done.stdout).get("result", [])
    return sorted(result[0]["expressions"][0]["value"]) if result else []


@check(points=4, section="Policy", timeout=120, hint="policy/delivery.rego, package delivery: deny images without "
       "@sha256:, the tag latest, a container without requests and limits for cpu and memory, a workload no "
       "PodDisruptionBudget selects, pods without opslab.dev/runtime: registry; opa test policy/ passes.")  # fmt: skip
def test_the_policy_decides_held_out_manifests(lab_path: Path) -> None:
    """the delivery policy allows a good release and denies each held-out bad one; its own tests pass"""
    cases = yaml.safe_load((HELDOUT / "manifests.yaml").read_text())
    wrong = []
    for case in cases:
        denied = opa_deny(lab_path, case["objects"])
        if case["allowed"] and denied:
            wrong.append(f"{case['name']} was denied ({denied[0]})")
        if not case["allowed"] and not denied:
            wrong.append(f"{case['name']} was allowed")
    assert not wrong, "the policy decides wrong: " + "; ".join(wrong)
    done = subprocess.run([tool("opa"), "test", str(lab_path / "policy")], capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip
    assert done.returncode == 0, f"opa test policy/ fails: {(done.stdout + done.stderr).strip()[-300:]}"
    passed = re.search(r"PASS: (\d+)/", done.stdout)
    assert passed and int(passed.group(1)) >= 4, "write at least 4 policy tests (allow and deny)"
