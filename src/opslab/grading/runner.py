"""Running a lab's grader: a pytest subprocess with the rubric plugin, bounded in time.

The grader runs in its own process, so a learner's program that hangs, crashes or floods the
output can only fail checks, never the grading. Each run has an id (OPSLAB_GRADING_RUN) that names
and labels everything it creates. The run is bounded by the lab's time_limit (lab.toml); checks it
did not reach score zero and a cut run never passes. Results land in the run directory as
grade.json and junit.xml, and a copy in .opslab/labs/<lab>/grades/ feeds `opslab lab list`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psutil
from kubernetes.client import ApiClient, VersionApi

from opslab.grading import isolation
from opslab.grading.labs import Lab
from opslab.grading.rubric import CheckResult, Grade
from opslab.grading.sandbox import new_scratch
from opslab.primitives.errors import ConfigError
from opslab.primitives.files import new_run_dir
from opslab.primitives.processes import kill_group, terminate
from opslab.runtime import kube, redis_auth, run_config, sqs
from opslab.runtime.endpoints import endpoint_environment
from opslab.settings import Settings

STOP_GRACE = 30.0
"""Seconds a grader stopped at its limit (or by Ctrl-C) has to clean up before it is killed."""


def new_run_id() -> str:
    """A grading run's id: short, lower case, DNS-safe (it names namespaces, nodes and topics)."""
    return "g" + uuid.uuid4().hex[:7]


def resolve_path(lab: Lab, path: Path | None) -> Path:
    """The directory to grade: --path, or the lab's starter/. A wrong --path is a clear error."""
    if path is None:
        return lab.starter
    resolved = path.expanduser().resolve()
    if not resolved.exists():
        raise ConfigError(f"--path {path} does not exist", fix=f"give the directory with your lab {lab.number} work")
    if not resolved.is_dir():
        raise ConfigError(f"--path {path} is a file, not a directory", fix="give the directory that holds your work")
    return resolved


def pytest_command(lab: Lab, settings: Settings, *options: str) -> list[str]:
    """The pytest command line that runs ``lab``'s grader with the rubric plugin."""
    if not lab.grader.is_dir():
        raise ConfigError(
            f"the grader of {lab.name} is missing ({lab.grader})", fix="is --graders the right directory?"
        )
    return [
        sys.executable, "-m", "pytest", str(lab.grader),
        "-c", str(settings.paths.root / "labs" / "pytest.ini"), "--rootdir", str(lab.grader),
        "-p", "pytest_timeout", "-p", "opslab.grading.plugin", "-p", "no:cacheprovider",
        "-q", "--no-header", "-rN", *options,
    ]  # fmt: skip


def grader_environment(**extra: str) -> dict[str, str]:
    """The environment a grader's pytest runs in. Plugins installed beside opslab are not loaded
    (pytest_command names the ones a grader uses): they cost seconds of start-up per grading, and a
    plugin that swallows a KeyboardInterrupt during start-up would keep a grading alive past its cut."""
    return {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONDONTWRITEBYTECODE": "1", **extra}


def list_checks(lab: Lab, settings: Settings) -> list[CheckResult]:
    """The lab's checks (id, title, section, points, hint, time limit), collected without running any."""
    with tempfile.TemporaryDirectory(prefix="opslab-checks-") as tmp:
        listing = Path(tmp) / "checks.json"
        command = pytest_command(lab, settings, "--rubric-list", str(listing))
        env = grader_environment()
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, check=False)
        if not listing.is_file():
            tail = " | ".join((result.stdout + result.stderr).strip().splitlines()[-3:])
            raise ConfigError(f"the grader of {lab.name} cannot be collected: {tail}")
        return [CheckResult(**item) for item in json.loads(listing.read_text())]


def select(only: list[str], skip: list[str]) -> str:
    """pytest's -k expression for the checks named in ``only`` (all when empty) but not in ``skip``."""
    chosen = f"({' or '.join(only)})" if only else ""
    left_out = f"not ({' or '.join(skip)})" if skip else ""
    return " and ".join(part for part in (chosen, left_out) if part)


class GradingCancelled(Exception):
    """The grading was stopped before its end because its caller asked (``cancel``)."""


def _wait(proc: subprocess.Popen[bytes], limit: float, cancel: threading.Event | None) -> None:
    """``proc.wait(limit)`` that also ends (GradingCancelled) within a second of ``cancel`` being set."""
    if cancel is None:
        proc.wait(limit)
        return
    deadline = time.monotonic() + limit
    while True:
        if cancel.is_set():
            raise GradingCancelled("the grading was cancelled")
        try:
            proc.wait(max(0.0, min(1.0, deadline - time.monotonic())))
            return
        except subprocess.TimeoutExpired:
            if time.monotonic() >= deadline:
                raise


def grade(
    lab: Lab,
    settings: Settings,
    *,
    path: Path | None = None,
    runs_root: Path | None = None,
    record: bool = True,
    timeout: float | None = None,
    only: list[str] | None = None,
    skip: list[str] | None = None,
    after: Callable[[str], object] | None = None,
    cancel: threading.Event | None = None,
) -> tuple[Grade, Path]:
    """Grade ``path`` (default: the lab's starter) against the lab's grader; return the grade and run dir.

    The grading stops at ``timeout`` (default: the lab's time limit); checks that did not finish
    score zero, and a grading cut short never passes. ``only`` restricts the run to the named
    checks (used to prove one check catches one mutant); ``skip`` leaves the named ones out (they
    are graded elsewhere, and are not in the grade). ``after(run_id)`` runs once the grader has
    exited, however it ended (it removes what the run left behind). Setting ``cancel`` (from
    another thread: a test session being interrupted) stops the grader within a second and raises
    GradingCancelled; its run is swept like any other. Whatever else stops the caller (Ctrl-C, a
    SIGTERM turned into SystemExit) stops the grader first.
    """
    target = resolve_path(lab, path)
    limit = lab.time_limit if timeout is None else timeout
    run_id = new_run_id()
    run_dir = new_run_dir(runs_root or settings.paths.runs, f"lab{lab.number:02d}")
    grade_file, junit = run_dir / "grade.json", run_dir / "junit.xml"
    args = pytest_command(
        lab, settings,
        "--rubric-json", str(grade_file), "--rubric-lab", lab.name, "--rubric-path", str(target),
        "--rubric-pass-mark", str(lab.pass_mark), "--rubric-time-limit", str(limit), "--junitxml", str(junit),
    )  # fmt: skip
    if only or skip:
        args += ["-k", select(only or [], skip or [])]
    sweep_stale_runs(settings)
    scratch = new_scratch(run_id)  # removed below, however the grader ends
    env = grader_environment(
        **endpoint_environment(settings),
        OPSLAB_LAB_PATH=str(target),
        OPSLAB_GRADING_RUN=run_id,
        OPSLAB_RUN_DIR=str(run_dir),
        OPSLAB_SCRATCH_DIR=str(scratch),
        OPSLAB_LAB_SETUP_LIMIT=str(lab.setup_limit),
    )
    began = time.monotonic()
    cut = False
    after = after or (lambda run: sweep_run(settings, run))
    try:
        with (run_dir / "grader.log").open("wb") as log:
            proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                _wait(proc, limit, cancel)
            except GradingCancelled:
                stop_grader(proc)
                raise
            except subprocess.TimeoutExpired:
                cut = True
                # What had finished at the limit is the grade: a check that completes while the
                # grader is being stopped came too late to count.
                at_cut = grade_file.read_bytes() if grade_file.is_file() else None
                stop_grader(proc)
                if at_cut is not None:
                    grade_file.write_bytes(at_cut)
                else:
                    grade_file.unlink(missing_ok=True)
            except BaseException:  # Ctrl-C, SystemExit: nothing of the grader outlives its caller
                stop_grader(proc)
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if after is not None:
            after(run_id)
    result = read_grade(grade_file, lab, target, run_dir, limit)
    if cut:
        missing = ", ".join(c.id for c in result.not_run) or "none"
        result.problem = (
            f"the grading was stopped at its overall limit of {limit:.0f} s "
            f"(lab.toml time_limit); checks that did not run: {missing}"
        )
    elif time.monotonic() - began >= limit and not result.problem:
        result.problem = f"the grading took longer than its overall limit of {limit:.0f} s"
    if result.not_run and not result.problem:
        result.problem = f"the grader stopped before these checks ran: {', '.join(c.id for c in result.not_run)}"
    grade_file.write_text(result.to_json())
    if record:
        history = settings.paths.state / "labs" / lab.name / "grades"
        history.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(grade_file, history / f"{run_dir.name}.json")
    return result, run_dir


def _admin(settings: Settings) -> ApiClient | None:
    """An admin client if the platform answers, else None (then there is nothing to sweep)."""
    if not settings.paths.kubeconfig.is_file():
        return None
    try:
        api = kube.api_client(settings.paths.kubeconfig, timeout=5)
        VersionApi(api).get_code()
    except Exception:
        return None
    return api


def sweep_run(settings: Settings, run_id: str) -> list[str]:
    """Remove what the run ``run_id`` left in the cluster, Kafka and Redis (after it ended, however)."""
    gone = run_config.remove(settings, {run_id})
    api = _admin(settings)
    if api is None:
        return gone
    return gone + isolation.sweep(api, {run_id}, **_stores(settings))


def sweep_stale_runs(settings: Settings) -> list[str]:
    """Remove what runs whose grader is gone left behind (a grader killed with SIGKILL)."""
    api = _admin(settings)
    if api is None:
        return []
    gone = isolation.sweep_stale(api, **_stores(settings))
    configured = run_config.runs_with_config(settings)
    stale = {run for run in configured - isolation.live_runs(api) if isolation.valid_run_id(run)}
    return gone + (run_config.remove(settings, stale) if stale else [])


def _stores(settings: Settings) -> dict[str, str]:
    """Where grading runs keep things outside the cluster: Kafka, Redis and the SQS queue."""
    return {
        "kafka": f"127.0.0.1:{settings.ports.kafka}",
        "redis": redis_auth.url(settings),
        "sqs": sqs.endpoint(settings),
    }


def read_grade(grade_file: Path, lab: Lab, target: Path, run_dir: Path, limit: float) -> Grade:
    """The grade the plugin wrote, or a failing one that says why there is none."""
    result = None
    if grade_file.is_file():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            result = Grade.load(grade_file)
    log = run_dir / "grader.log"
    tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:]) if log.is_file() else ""
    if result is None:
        return Grade(
            lab=lab.name, path=str(target), pass_mark=lab.pass_mark, time_limit=limit,
            problem=f"the grader did not start its checks (see {log}): {tail}",
        )  # fmt: skip
    if not result.checks and not result.problem:
        result.problem = f"the grader ran no check (see {log}): {tail}"
    return result


def stop_grader(proc: subprocess.Popen[bytes], grace: float = STOP_GRACE) -> None:
    """Interrupt a grader so its fixtures clean up (namespaces, nodes, learner processes), then
    make sure nothing it started survives, including learner programs in their own sessions."""
    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    kill_group(proc.pid, signal.SIGINT)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        kill_group(proc.pid)
        proc.wait()
    terminate([d for d in descendants if d.is_running()], grace=5)


def history(settings: Settings, lab: Lab) -> list[Grade]:
    """Every recorded grade of a lab, oldest first."""
    directory = settings.paths.state / "labs" / lab.name / "grades"
    if not directory.is_dir():
        return []
    grades = []
    for path in sorted(directory.glob("*.json")):
        try:
            grades.append(Grade.load(path))
        except (ValueError, KeyError, TypeError):
            continue
    return grades
