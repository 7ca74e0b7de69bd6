"""Fixtures and helpers for lab graders (a pytest plugin: `pytest_plugins = ["opslab.grading.fixtures"]`).

Everything a learner wrote is read or run through these, so that a missing file, a syntax
error, a program that hangs or crashes, or a stopped platform becomes a failed check with a
one-line reason, never a crash of the grader.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil
import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from opslab.grading import isolation
from opslab.grading.sandbox import SANDBOX_NOTE, Sandbox, bwrap_works, find_bwrap, new_scratch
from opslab.primitives.processes import kill_group
from opslab.runtime import kube
from opslab.runtime.components.kube import AUDIT_LOG, AuditedRequest, audited_requests


class LearnerError(AssertionError):
    """Something in the learner's work keeps a check from running; the message says what."""


@dataclass(frozen=True)
class LearnerRun:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def tail(self, lines: int = 3) -> str:
        text = (self.stderr or self.stdout).strip().splitlines()
        return " | ".join(line.strip() for line in text[-lines:])[:400] or "(no output)"


def _spawn(
    args: Sequence[str],
    cwd: Path,
    env: dict[str, str] | None,
    *,
    sandbox: Sandbox | None,
    stdout: int | IO[bytes],
    what: str,
    readable: Sequence[Path] = (),
    text: bool = False,
) -> subprocess.Popen[Any]:
    """Start a learner program: in ``sandbox`` with its scrubbed environment, or (for the grader's
    own tools, sandbox None) with the grader's environment plus ``env``."""
    if sandbox is None:
        command, environment = list(args), {**os.environ, **(env or {})}
    else:
        command, environment = sandbox.command(args, cwd, readable=readable), sandbox.env(env)
    try:
        return subprocess.Popen(
            command, cwd=cwd, env=environment, stdout=stdout,
            stderr=subprocess.PIPE if stdout == subprocess.PIPE else subprocess.STDOUT,
            stdin=subprocess.DEVNULL, text=text, start_new_session=True,
        )  # fmt: skip
    except OSError as exc:
        raise LearnerError(f"{what} could not start: {exc.strerror}") from None


def run_learner(
    args: Sequence[str],
    *,
    cwd: Path,
    timeout: float,
    env: dict[str, str] | None = None,
    what: str = "your program",
    sandbox: Sandbox | None = None,
    readable: Sequence[Path] = (),
) -> LearnerRun:
    """Run a program with a time limit; a hang is killed and reported, never waited out.

    Learner programs run in the run's ``sandbox``; the grader's own tools (promtool, go build)
    pass None and run with the grader's environment.
    """
    began = time.monotonic()
    proc = _spawn(args, cwd, env, sandbox=sandbox, stdout=subprocess.PIPE, what=what, readable=readable, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc.pid)
        proc.communicate()
        raise LearnerError(f"{what} did not finish within {timeout:.0f} s and was stopped") from None
    return LearnerRun(tuple(args), proc.returncode, out[-100_000:], err[-100_000:], time.monotonic() - began)


def start_learner(
    args: Sequence[str],
    *,
    cwd: Path,
    log: Path,
    sandbox: Sandbox,
    env: dict[str, str] | None = None,
    what: str = "your program",
    readable: Sequence[Path] = (),
) -> subprocess.Popen[bytes]:
    """Start a long-running learner program (an operator, an exporter) in the sandbox, output to ``log``.

    It runs in a session of its own; stop it with ``stop_learner``.
    """
    with log.open("wb") as out:
        return _spawn(args, cwd, env, sandbox=sandbox, stdout=out, what=what, readable=readable)


def signal_learner(proc: subprocess.Popen[Any], sig: int) -> None:
    """Send ``sig`` to the learner's program itself.

    In the sandbox the program runs in a session of its own under bubblewrap, which does not pass
    signals on (and dies at a SIGTERM, taking the program with it): the signal goes to bubblewrap's
    descendants, not to bubblewrap. Without the sandbox it goes to the program's process group.
    """
    try:
        wrapper = psutil.Process(proc.pid)
        inside = [child for child in wrapper.children(recursive=True) if child.name() != "bwrap"]
        sandboxed = wrapper.name() == "bwrap"
    except psutil.NoSuchProcess:
        return
    if not sandboxed:
        kill_group(proc.pid, sig)
        return
    for child in inside:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.send_signal(sig)


def stop_learner(proc: subprocess.Popen[Any], grace: float = 10) -> None:
    """SIGTERM the program, then SIGKILL its process group after ``grace`` seconds."""
    signal_learner(proc, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        kill_group(proc.pid)
        proc.wait()


def eventually(predicate: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    """A check's bounded wait: the first truthy value of ``predicate`` within ``timeout`` seconds,
    else its last value. An exception counts as "not yet" (the object may not exist yet)."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception:
            value = None
        if value:
            return value
        time.sleep(interval)
    return value


HOLD_QUOTA = "grading-hold"
"""The ResourceQuota hold_pods puts on a namespace."""


def hold_pods(core: client.CoreV1Api, namespace: str, pods: int, labels: dict[str, str] | None = None) -> None:
    """Cap ``namespace`` at ``pods`` pods with a ResourceQuota, in force when this returns: a pod
    beyond it cannot even be created, whatever the scheduler or the controllers do (a Pending pod
    kept off every node is not a hold: it gets scheduled the moment a node fits)."""
    quota = client.V1ResourceQuota(
        metadata=client.V1ObjectMeta(name=HOLD_QUOTA, labels=labels or {}),
        spec=client.V1ResourceQuotaSpec(hard={"pods": str(pods)}),
    )
    core.create_namespaced_resource_quota(namespace, quota)

    def in_force() -> bool:
        found: Any = core.read_namespaced_resource_quota(HOLD_QUOTA, namespace)
        return bool(found.status and found.status.hard)

    if not eventually(in_force, 30):
        raise RuntimeError(f"the quota controller did not take up {HOLD_QUOTA} in {namespace} within 30 s")


def lift_hold(core: client.CoreV1Api, apps: client.AppsV1Api, namespace: str) -> None:
    """Lift hold_pods' quota, and have each ReplicaSet create its missing pods now (it backs off
    between refused creations; an update to it makes it try again at once)."""
    core.delete_namespaced_resource_quota(HOLD_QUOTA, namespace)

    def gone() -> bool:
        quotas: Any = core.list_namespaced_resource_quota(namespace)
        return HOLD_QUOTA not in {q.metadata.name for q in quotas.items}

    eventually(gone, 15, interval=0.2)
    stamp = {"metadata": {"annotations": {"opslab.dev/hold-lifted": str(time.time())}}}
    replica_sets: Any = apps.list_namespaced_replica_set(namespace)
    for replica_set in replica_sets.items:
        apps.patch_namespaced_replica_set(replica_set.metadata.name, namespace, stamp)


def env_or_fail(name: str) -> str:
    """A platform endpoint the runner passed in (OPSLAB_*); fails the check if the platform is not running."""
    value = os.environ.get(name, "")
    if not value:
        pytest.fail(f"the platform is not running (no {name}): start it with `make up`")
    return value


def python() -> str:
    """The interpreter learner Python programs run with (opslab's, with its libraries)."""
    return sys.executable


@pytest.fixture(scope="session")
def lab_path() -> Path:
    """The directory being graded (the lab's starter/, or --path)."""
    path = Path(os.environ.get("OPSLAB_LAB_PATH", ""))
    if not str(path) or not path.is_dir():
        pytest.fail(f"the directory to grade ({path}) does not exist: restore the starter with `opslab lab reset`")
    if not any(path.iterdir()):
        pytest.fail(f"{path} is empty: restore the starter with `opslab lab reset`")
    return path


def learner_file(lab_path: Path, name: str) -> Path:
    path = lab_path / name
    if not path.is_file():
        raise LearnerError(f"{name} is missing from {lab_path}")
    return path


def learner_yaml(lab_path: Path, name: str) -> list[dict[str, Any]]:
    """The documents of a learner's YAML file; a syntax error names the line."""
    path = learner_file(lab_path, name)
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise LearnerError(f"{name}{where} is not valid YAML: {getattr(exc, 'problem', exc)}") from None
    for document in documents:
        if not isinstance(document, dict) or "kind" not in document:
            raise LearnerError(f"{name} has a document that is not a Kubernetes object (no kind)")
    return documents


def find_object(documents: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    for document in documents:
        if document.get("kind") == kind and (name is None or document.get("metadata", {}).get("name") == name):
            return document
    raise LearnerError(f"no {kind}{f' named {name}' if name else ''} in your manifests")


@pytest.fixture(scope="session")
def kube_api() -> client.ApiClient:
    """An admin client for the running platform; fails every check that needs it if the platform is down."""
    config = Path(os.environ.get("OPSLAB_KUBECONFIG", ""))
    if not config.is_file():
        pytest.fail("the platform is not running (no kubeconfig): start it with `make up`")
    api = kube.api_client(config, timeout=5)
    try:
        client.VersionApi(api).get_code()
    except Exception:
        pytest.fail("the platform is not running (the API server does not answer): start it with `make up`")
    return api


def audited(*, namespace: str, user: str | None = None) -> list[AuditedRequest]:
    """The audited API requests (evictions) in ``namespace``, by ``user`` if given, oldest first.

    The API server's audit log answers "who asked for what, and what was the answer" per request,
    which its metrics cannot: they count every run's requests together.
    """
    state = os.environ.get("OPSLAB_STATE_DIR")
    if not state:
        pytest.fail("the platform's state directory is unknown (OPSLAB_STATE_DIR): grade with `opslab lab check`")
    return [
        r for r in audited_requests(Path(state) / AUDIT_LOG)
        if r.namespace == namespace and (user is None or r.user == user)
    ]  # fmt: skip


@pytest.fixture(scope="session")
def run_id() -> str:
    """The grading run's id (from the runner; a fresh one when pytest runs a grader by hand)."""
    given = os.environ.get("OPSLAB_GRADING_RUN", "")
    return given if isolation.valid_run_id(given) else "g" + os.urandom(4).hex()[:7]


@pytest.fixture(scope="session")
def lab_namespace(kube_api: client.ApiClient, run_id: str) -> Iterator[str]:
    """The run's own namespace (labelled with the run id, owned by this grader), deleted afterwards."""
    name = isolation.create_namespace(kube_api, run_id)
    yield name
    with contextlib.suppress(ApiException):
        client.CoreV1Api(kube_api).delete_namespace(name)


@pytest.fixture(scope="session")
def scratch(run_id: str) -> Iterator[Path]:
    """The run's writable directory for learner programs (their HOME and TMPDIR): the one the runner
    made (and removes however the grader ends), or a fresh one when pytest runs a grader by hand."""
    given = os.environ.get("OPSLAB_SCRATCH_DIR")
    path = Path(given) if given else new_scratch(run_id)
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def make_sandbox(scratch: Path, environment: dict[str, str] | None = None) -> Sandbox:
    """The sandbox of this run: the platform's state and the home directory hidden, the repository,
    Python and the toolchain shown read-only, only ``scratch`` writable."""
    state = Path(os.environ.get("OPSLAB_STATE_DIR", "")).resolve() if os.environ.get("OPSLAB_STATE_DIR") else None
    root = Path(os.environ["OPSLAB_ROOT"]).resolve() if os.environ.get("OPSLAB_ROOT") else None
    cache = Path(os.environ["OPSLAB_CACHE_DIR"]).resolve() if os.environ.get("OPSLAB_CACHE_DIR") else None
    hidden = tuple(p for p in (Path.home().resolve(), state) if p is not None and p != Path("/"))
    python_home = Path(sys.base_prefix).resolve()
    visible = tuple(p for p in (root, python_home, Path(sys.prefix).resolve(), cache) if p is not None)
    bwrap = find_bwrap(cache)
    reason = bwrap_works(bwrap) if bwrap else "bwrap not found: run `opslab setup`"
    return Sandbox(
        scratch=scratch, hidden=hidden, visible=visible, bwrap=None if reason else bwrap,
        environment=environment or {}, reason=reason,
    )  # fmt: skip


@pytest.fixture(scope="session")
def sandbox(scratch: Path) -> Sandbox:
    """How this run starts learner programs (see opslab.grading.sandbox); which sandbox applies is
    recorded in the run directory's sandbox.txt."""
    made = make_sandbox(scratch)
    if os.environ.get("OPSLAB_RUN_DIR"):
        (Path(os.environ["OPSLAB_RUN_DIR"]) / SANDBOX_NOTE).write_text(made.describe() + "\n")
    return made


@pytest.fixture(scope="session")
def learner_access() -> isolation.Grant:
    """The RBAC a lab's learner programs get; a lab's conftest overrides it (default: none)."""
    return isolation.Grant()


@pytest.fixture(scope="session")
def learner_kubeconfig(
    kube_api: client.ApiClient, run_id: str, lab_namespace: str, learner_access: isolation.Grant, scratch: Path
) -> Path:
    """A kubeconfig (mode 0600) for the run's least-privilege ServiceAccount, never the admin's."""
    admin = Path(os.environ.get("OPSLAB_KUBECONFIG", ""))
    return isolation.grant(
        kube_api, run_id, lab_namespace, learner_access, kubeconfig=scratch / "kubeconfig", admin_kubeconfig=admin
    )
