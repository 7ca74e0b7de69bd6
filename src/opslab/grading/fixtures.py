"""Fixtures and helpers for lab graders (a pytest plugin: `pytest_plugins = ["opslab.grading.fixtures"]`).

Everything a learner wrote is read or run through these, so that a missing file, a syntax
error, a program that hangs or crashes, or a stopped platform becomes a failed check with a
one-line reason, never a crash of the grader.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from opslab.primitives.processes import kill_group
from opslab.runtime import kube


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


def run_learner(
    args: Sequence[str], *, cwd: Path, timeout: float, env: dict[str, str] | None = None, what: str = "your program"
) -> LearnerRun:
    """Run a learner's program with a time limit; a hang is killed and reported, never waited out."""
    began = time.monotonic()
    try:
        proc = subprocess.Popen(
            list(args),
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
    except OSError as exc:
        raise LearnerError(f"{what} could not start: {exc.strerror}") from None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc.pid)
        proc.communicate()
        raise LearnerError(f"{what} did not finish within {timeout:.0f} s and was stopped") from None
    return LearnerRun(tuple(args), proc.returncode, out[-100_000:], err[-100_000:], time.monotonic() - began)


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


@pytest.fixture(scope="session")
def lab_namespace(kube_api: client.ApiClient) -> Iterator[str]:
    """A fresh namespace for this grading run, deleted afterwards."""
    core = client.CoreV1Api(kube_api)
    name = f"grade-{uuid.uuid4().hex[:6]}"
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"opslab.dev/grading": "true"}))
    )
    yield name
    with contextlib.suppress(ApiException):
        core.delete_namespace(name)
