"""Running a lab's grader: a pytest subprocess with the rubric plugin, bounded in time.

The grader runs in its own process, so a learner's program that hangs, crashes or floods the
output can only fail checks, never the grading. Results land in the run directory as grade.json
and junit.xml, and a copy in .opslab/labs/<lab>/grades/ feeds `opslab lab list`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from opslab.grading.labs import Lab
from opslab.grading.rubric import Grade
from opslab.primitives.errors import ConfigError
from opslab.primitives.files import new_run_dir
from opslab.primitives.processes import kill_group, terminate
from opslab.runtime.endpoints import endpoint_environment
from opslab.settings import Settings

GRADER_TIMEOUT = 900.0
"""No grader run may take longer than this, whatever its checks' own limits."""


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


def grade(
    lab: Lab,
    settings: Settings,
    *,
    path: Path | None = None,
    runs_root: Path | None = None,
    record: bool = True,
    timeout: float = GRADER_TIMEOUT,
    only: list[str] | None = None,
) -> tuple[Grade, Path]:
    """Grade ``path`` (default: the lab's starter) against the lab's grader; return the grade and run dir.

    ``only`` restricts the run to the named checks (used to prove one check catches one mutant).
    """
    target = resolve_path(lab, path)
    run_dir = new_run_dir(runs_root or settings.paths.runs, f"lab{lab.number:02d}")
    grade_file, junit = run_dir / "grade.json", run_dir / "junit.xml"
    args = [
        sys.executable, "-m", "pytest", str(lab.grader),
        "-c", str(settings.paths.root / "labs" / "pytest.ini"), "--rootdir", str(lab.grader),
        "-p", "opslab.grading.plugin", "-p", "no:cacheprovider",
        "--rubric-json", str(grade_file), "--rubric-lab", lab.name, "--rubric-path", str(target),
        "--rubric-pass-mark", str(lab.pass_mark), "--junitxml", str(junit), "-q", "--no-header", "-rN",
    ]  # fmt: skip
    if only:
        args += ["-k", " or ".join(only)]
    env = {
        **os.environ,
        **endpoint_environment(settings),
        "OPSLAB_LAB_PATH": str(target),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    began = time.monotonic()
    with (run_dir / "grader.log").open("wb") as log:
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            stop_grader(proc)
        except KeyboardInterrupt:
            stop_grader(proc)
            raise
    result = None
    if grade_file.is_file():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            result = Grade.load(grade_file)
    if result is not None and not result.checks and not result.problem:
        tail = (run_dir / "grader.log").read_text(errors="replace").strip().splitlines()[-3:]
        result.problem = f"the grader ran no check (see {run_dir / 'grader.log'}): {' | '.join(tail)}"
        grade_file.write_text(result.to_json())
    if result is None:
        tail = (run_dir / "grader.log").read_text(errors="replace").strip().splitlines()[-3:]
        problem = f"the grader did not finish (see {run_dir / 'grader.log'}): {' | '.join(tail)}"
        if time.monotonic() - began >= timeout:
            problem = f"the grader took longer than {timeout:.0f} s and was stopped"
        result = Grade(lab=lab.name, path=str(target), pass_mark=lab.pass_mark, problem=problem)
        grade_file.write_text(result.to_json())
    if record:
        history = settings.paths.state / "labs" / lab.name / "grades"
        history.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(grade_file, history / f"{run_dir.name}.json")
    return result, run_dir


def stop_grader(proc: subprocess.Popen[bytes], grace: float = 30.0) -> None:
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
