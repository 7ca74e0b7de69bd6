"""The grading framework on a real platform: the learner sandbox holds, concurrent runs are isolated,
and a learner can preview their rules in the platform's Prometheus.

A tiny lab (written to a temporary directory) stands in for a real one, so these tests prove the
framework itself in seconds: a learner program that tries to escape is refused by RBAC and by
the file system, and an instructor's batch graded two at a time scores what it scores one at a time.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import httpx
import pytest
import redis
from kubernetes import client

from opslab.grading import isolation, preview
from opslab.grading.fixtures import eventually, make_sandbox, run_learner
from opslab.grading.gradebook import grade_submissions
from opslab.grading.labs import Lab, find_lab
from opslab.grading.runner import new_run_id
from opslab.primitives.errors import ConfigError
from opslab.runtime import kube, sqs
from opslab.runtime.endpoints import endpoint_environment
from opslab.runtime.lifecycle import Platform

pytestmark = pytest.mark.platform

ESCAPE = """
import json, os, sys
from pathlib import Path
from kubernetes import client, config

admin_kubeconfig, grader_file, repo = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
config.load_kube_config()
core = client.CoreV1Api()
tried = {}

def attempt(name, action):
    try:
        action()
        tried[name] = "done"
    except client.ApiException as exc:
        tried[name] = f"http {exc.status}"
    except OSError as exc:
        tried[name] = type(exc).__name__

attempt("delete namespace shop", lambda: core.delete_namespace("shop"))
attempt("read kube-system secrets", lambda: core.list_namespaced_secret("kube-system"))
attempt("read the admin kubeconfig", lambda: Path(admin_kubeconfig).read_text())
attempt("rewrite a grader file", lambda: grader_file.write_text("def test_free_points(): pass"))
attempt("add a file to the repository", lambda: (repo / "labs" / ".escape-probe").write_text("x"))
attempt("own namespace configmap", lambda: core.create_namespaced_config_map(
    config.list_kube_config_contexts()[1]["context"]["namespace"],
    {"metadata": {"name": "allowed"}, "data": {"ok": "yes"}}))
tried["admin variables"] = sorted(k for k in os.environ if k in ("OPSLAB_KUBECONFIG", "OPSLAB_STATE_DIR"))
print(json.dumps(tried))
"""


def test_a_learner_program_cannot_escape_its_sandbox_or_rbac(
    platform: Platform, api: client.ApiClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in endpoint_environment(platform.settings).items():
        monkeypatch.setenv(key, value)
    run_id = new_run_id()
    namespace = isolation.create_namespace(api, run_id)
    try:
        scratch = tmp_path / "scratch"
        scratch.mkdir(mode=0o700)
        kubeconfig = isolation.grant(
            api, run_id, namespace,
            isolation.Grant(rules=({"resources": ["configmaps"], "verbs": ["create", "get"]},)),
            kubeconfig=scratch / "kubeconfig", admin_kubeconfig=platform.paths.kubeconfig,
        )  # fmt: skip
        assert kubeconfig.stat().st_mode & 0o777 == 0o600
        sandbox = make_sandbox(scratch, {"KUBECONFIG": str(kubeconfig)})
        assert sandbox.bwrap, f"no file-system sandbox on this machine: {sandbox.reason}"
        work = tmp_path / "submission"
        work.mkdir()
        (work / "escape.py").write_text(ESCAPE)
        grader = tmp_path / "grader"
        grader.mkdir()
        (grader / "test_lab.py").write_text("def test_real(): assert False\n")
        done = run_learner(
            ["python", "escape.py", str(platform.paths.kubeconfig), str(grader / "test_lab.py"),
             str(platform.paths.root)],
            cwd=work, timeout=60, sandbox=sandbox, readable=[grader],
        )  # fmt: skip
        assert done.returncode == 0, done.tail()
        tried = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        isolation.sweep(api, {run_id})
        (platform.paths.root / "labs" / ".escape-probe").unlink(missing_ok=True)
    assert tried["delete namespace shop"] == "http 403"
    assert tried["read kube-system secrets"] == "http 403"
    assert tried["read the admin kubeconfig"] == "FileNotFoundError"  # the state directory is empty inside
    assert tried["rewrite a grader file"] in ("OSError", "PermissionError")  # read-only
    assert tried["add a file to the repository"] in ("OSError", "PermissionError")
    assert tried["own namespace configmap"] == "done", "the grant itself works"
    assert tried["admin variables"] == []
    assert (grader / "test_lab.py").read_text() == "def test_real(): assert False\n"
    assert client.CoreV1Api(api).read_namespace("shop").status.phase == "Active"


def test_a_confined_grant_writes_only_in_the_runs_namespaces_and_its_sweep_removes_them(
    platform: Platform, api: client.ApiClient, tmp_path: Path
) -> None:
    """Cluster rules to make namespaces (lab 7's Terraform), confined by admission to <run>-...; the
    namespaces it made carry no run label, and the run's sweep still removes them."""
    run_id = new_run_id()
    namespace = isolation.create_namespace(api, run_id)
    core = client.CoreV1Api(api)
    try:
        access = isolation.Grant(
            cluster_rules=({"resources": ["namespaces", "configmaps"], "verbs": ["create", "get", "delete"]},),
            writes_only_in=f"{run_id}-",
        )
        admin = platform.paths.kubeconfig
        kubeconfig = isolation.grant(api, run_id, namespace, access, kubeconfig=tmp_path / "kubeconfig",
                                     admin_kubeconfig=admin)  # fmt: skip
        with kube.api_client(kubeconfig, timeout=10) as learner:
            mine = client.CoreV1Api(learner)
            mine.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=f"{run_id}-tenant")))
            mine.create_namespaced_config_map(f"{run_id}-tenant", {"metadata": {"name": "ok"}})
            mine.create_namespaced_config_map(namespace, {"metadata": {"name": "home"}})
            for attempt in (
                lambda: mine.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=f"x{run_id}"))),
                lambda: mine.create_namespaced_config_map("shop", {"metadata": {"name": f"{run_id}-probe"}}),
                lambda: mine.delete_namespace("shop"),
            ):
                with pytest.raises(client.ApiException) as refused:
                    attempt()
                assert refused.value.status in (403, 422), refused.value
                assert "grading identity" in str(refused.value.body)
        assert core.read_namespace("shop").status.phase == "Active"
    finally:
        gone = isolation.sweep(api, {run_id})
    assert f"namespace/{run_id}-tenant" in gone
    assert f"validatingadmissionpolicy/opslab-grading-{run_id}-learner" in gone


def test_a_sweep_removes_the_redis_keys_of_its_runs_and_nothing_else(platform: Platform) -> None:
    url = endpoint_environment(platform.settings)["OPSLAB_REDIS_URL"]
    gone_run, kept_run = new_run_id(), new_run_id()
    mine = [f"{isolation.topic_prefix(gone_run)}claim:orders", f"{isolation.topic_prefix(gone_run)}claim:orders:dead"]
    others = [f"{isolation.topic_prefix(kept_run)}claim:orders", "cart:user-1-sweep-test"]
    connection = redis.Redis.from_url(url)
    try:
        for key in mine + others:
            connection.xadd(key, {"order": b"{}"})
        assert sorted(isolation.sweep_redis(url, {gone_run})) == sorted(f"redis-key/{k}" for k in mine)
        assert connection.exists(*mine) == 0 and connection.exists(*others) == len(others)
    finally:
        connection.delete(*mine, *others)
        connection.close()


def test_a_sweep_removes_the_sqs_queues_of_its_runs_and_nothing_else(platform: Platform) -> None:
    url = sqs.endpoint(platform.settings)
    queues = sqs.client(url)
    gone_run, kept_run = new_run_id(), new_run_id()
    mine = [f"{isolation.topic_prefix(gone_run)}crash-orders", f"{isolation.topic_prefix(gone_run)}crash-orders-dlq"]
    others = [f"{isolation.topic_prefix(kept_run)}crash-orders", "orders-sweep-test"]
    urls = {name: queues.create_queue(QueueName=name)["QueueUrl"] for name in mine + others}
    try:
        assert sorted(isolation.sweep_sqs(url, {gone_run})) == sorted(f"sqs-queue/{name}" for name in mine)
        left = {u.rsplit("/", 1)[-1] for u in queues.list_queues().get("QueueUrls", [])}
        assert not left & set(mine) and set(others) <= left
    finally:
        for name in others:
            queues.delete_queue(QueueUrl=urls[name])


CONFTEST = """
import pytest
from opslab.grading import isolation

pytest_plugins = ["opslab.grading.fixtures"]


@pytest.fixture(scope="session")
def learner_access():
    return isolation.Grant(rules=({"resources": ["configmaps"], "verbs": ["create", "get"]},))
"""

GRADER = '''
import sys
from kubernetes import client
from opslab.grading.fixtures import eventually, learner_file, run_learner
from opslab.grading.rubric import check


@check(points=2, section="Answer", hint="write 42 to answer.txt", timeout=30)
def test_answer(lab_path):
    """answer.txt says 42"""
    text = learner_file(lab_path, "answer.txt").read_text().strip()
    assert text == "42", f"answer.txt says {text!r}"


@check(points=3, section="Cluster", hint="publish.py stores answer.txt in ConfigMap answer", timeout=60)
def test_published(lab_path, kube_api, lab_namespace, learner_kubeconfig, sandbox):
    """publish.py stores the answer in ConfigMap `answer` of the run's namespace"""
    learner_file(lab_path, "publish.py")
    done = run_learner([sys.executable, "publish.py"], cwd=lab_path, timeout=40, sandbox=sandbox,
                       env={"KUBECONFIG": str(learner_kubeconfig)})
    assert done.returncode == 0, f"publish.py failed: {done.tail()}"
    core = client.CoreV1Api(kube_api)
    found = eventually(lambda: core.read_namespaced_config_map("answer", lab_namespace), 10)
    expected = (lab_path / "answer.txt").read_text().strip()
    assert found and found.data == {"answer": expected}, f"ConfigMap answer holds {found and found.data}"
'''

PUBLISH = """
from pathlib import Path
from kubernetes import client, config

config.load_kube_config()
namespace = config.list_kube_config_contexts()[1]["context"]["namespace"]
answer = Path("answer.txt").read_text().strip()
client.CoreV1Api().create_namespaced_config_map(namespace, {"metadata": {"name": "answer"}, "data": {"answer": answer}})
"""


def tiny_lab(root: Path) -> Lab:
    directory = root / "labs" / "90-probe"
    (directory / "grader").mkdir(parents=True)
    (directory / "starter").mkdir()
    (directory / "grader" / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    (directory / "grader" / "test_probe.py").write_text(textwrap.dedent(GRADER))
    (directory / "starter" / "answer.txt").write_text("?\n")
    return Lab(number=90, slug="probe", title="probe", minutes=1, pass_mark=0.8, directory=directory, time_limit=120)


def test_concurrent_grading_scores_what_sequential_grading_scores(platform: Platform, tmp_path: Path) -> None:
    lab = tiny_lab(tmp_path / "instructor")
    learners = {"ada": ("42", True), "bob": ("41", True), "cy": ("42", False), "dee": ("?", False)}
    submissions = tmp_path / "submissions"
    for name, (answer, publishes) in learners.items():
        work = submissions / name / "labs" / lab.name / "starter"
        work.mkdir(parents=True)
        (work / "answer.txt").write_text(answer + "\n")
        if publishes:
            (work / "publish.py").write_text(PUBLISH)

    def scores(jobs: int) -> dict[tuple[str, str], tuple[str, int]]:
        book = grade_submissions(platform.settings, submissions, [lab], out=tmp_path / f"jobs{jobs}", jobs=jobs)
        return {(name, c.id): (c.status, c.earned) for name, row in book.grades.items() for c in row[lab.name].checks}

    sequential, concurrent = scores(1), scores(2)
    assert concurrent == sequential
    assert sequential[("ada", "test_published")] == ("passed", 3)
    assert sequential[("bob", "test_answer")][1] == 0 and sequential[("bob", "test_published")] == ("passed", 3)
    assert sequential[("cy", "test_answer")] == ("passed", 2) and sequential[("cy", "test_published")][1] == 0
    assert all(earned == 0 for (name, _), (_, earned) in sequential.items() if name == "dee")


def test_preview_loads_a_learners_rules_and_target_and_never_half_applies(platform: Platform, tmp_path: Path) -> None:
    lab = find_lab(platform.paths.root, 3)
    settings, promtool = platform.settings, platform.ctx.toolchain.require("promtool")
    prometheus = f"http://127.0.0.1:{settings.ports.prometheus}"

    def groups() -> set[str]:
        data = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
        return {g["name"] for g in data if "preview-03" in g["file"]}

    work = tmp_path / "work"
    work.mkdir()
    (work / "rules.yml").write_text("groups:\n- name: mine\n  rules:\n  - record: mine:up:sum\n    expr: sum(up)\n")
    try:
        shown = preview.start(lab, settings, promtool, path=work, port=1)
        assert groups() == {"mine"}
        assert shown.target == "127.0.0.1:1"
        # The learner's exporter is not running: that is the learner's business, not the platform's.
        assert platform.targets_probe().ok, "a lab's target kept the platform from being ready"
        (work / "rules.yml").write_text("groups:\n- name: broken\n  rules:\n  - record: x\n    expr: sum(\n")
        with pytest.raises(ConfigError, match="promtool refuses your rules"):
            preview.start(lab, settings, promtool, path=work)
        assert groups() == {"mine"}, "a refused file replaced the loaded one"
    finally:
        preview.stop(lab, settings)
    assert eventually(lambda: not groups(), 15), "stop left the rules loaded"
    assert not list((settings.paths.config / "lab-targets").glob("preview-*"))


def test_a_lab_with_rules_only_previews_them_without_a_target(platform: Platform) -> None:
    lab = find_lab(platform.paths.root, 7)
    settings, promtool = platform.settings, platform.ctx.toolchain.require("promtool")
    rules = f"http://127.0.0.1:{settings.ports.prometheus}/api/v1/rules"

    def groups() -> set[str]:
        data = httpx.get(rules, timeout=5).json()["data"]["groups"]
        return {g["name"] for g in data if "preview-07" in g["file"]}

    try:
        shown = preview.start(lab, settings, promtool, path=platform.paths.root / "solutions" / lab.name)
        assert shown.target == "" and groups() == {"terraform-drift"}
        assert not list((settings.paths.config / "lab-targets").glob("preview-*")), "a target for no exporter"
    finally:
        preview.stop(lab, settings)
    assert eventually(lambda: not groups(), 15), "stop left the rules loaded"
