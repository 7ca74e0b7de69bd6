"""Lab 9 grader: the learner's rules and report against a month they have not seen, served by a
Thanos of the run's own (see support.py)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import Answers, RunThanos, heldout_month, prepare_bucket, report_end_minute

from opslab.grading.fixtures import LearnerError, LearnerRun, learner_file, python, run_learner
from opslab.grading.sandbox import Sandbox
from opslab.runtime import history

pytest_plugins = ["opslab.grading.fixtures"]
SERVED = pytest.StashKey[tuple[Path, RunThanos] | str]()
"""The run's bucket and the Thanos serving it, or why they could not be had."""
NEEDS = {"bucket", "thanos", "answers", "report"}


def pytest_collection_finish(session: pytest.Session) -> None:
    """Make (or find in the day's cache) the compacted months and start the run's Thanos before the
    first check: 30-120 s the first time on a machine each day, counted against lab.toml's
    setup_limit, not a check's limit."""
    if not os.environ.get("OPSLAB_LAB_PATH") or session.config.getoption("--rubric-list", None):
        return
    if not any(NEEDS & set(getattr(item, "fixturenames", ())) for item in session.items):
        return
    began = time.monotonic()
    try:
        bucket = prepare_bucket(heldout_month())
        work = Path(tempfile.mkdtemp(prefix="opslab-lab09-thanos-"))
        generated = history.Generated(**json.loads((bucket / history.MARKER).read_text()))
        session.config.add_cleanup(lambda: shutil.rmtree(work, ignore_errors=True))
        running = RunThanos(bucket, work, generated.end)
        session.config.add_cleanup(running.stop)
        session.config.stash[SERVED] = (bucket, running)
        outcome = "served"
    except Exception as exc:  # reported by every check that needs it
        session.config.stash[SERVED] = f"the held-out month could not be served: {str(exc)[:300]}"
        outcome = "failed"
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"lab 9: the held-out month {outcome} in {time.monotonic() - began:.0f} s")


def _served(request: pytest.FixtureRequest) -> tuple[Path, RunThanos]:
    served = request.config.stash.get(SERVED, None)
    if served is None:  # collected without the hook (a grader run by hand): serve it now
        bucket = prepare_bucket(heldout_month())
        generated = history.Generated(**json.loads((bucket / history.MARKER).read_text()))
        work = Path(tempfile.mkdtemp(prefix="opslab-lab09-thanos-"))
        request.config.add_cleanup(lambda: shutil.rmtree(work, ignore_errors=True))
        served = (bucket, RunThanos(bucket, work, generated.end))
        request.config.add_cleanup(served[1].stop)
        request.config.stash[SERVED] = served
    if isinstance(served, str):
        pytest.fail(served)
    return served


@pytest.fixture(scope="session")
def bucket(request: pytest.FixtureRequest) -> Path:
    return _served(request)[0]


@pytest.fixture(scope="session")
def thanos(request: pytest.FixtureRequest) -> RunThanos:
    return _served(request)[1]


@pytest.fixture(scope="session")
def answers(bucket: Path) -> Answers:
    """The held-out month's answers, for the day its bucket was made (its marker says which)."""
    generated = history.Generated(**json.loads((bucket / history.MARKER).read_text()))
    return Answers(heldout_month(), generated, report_end_minute())


@dataclass
class Report:
    run: LearnerRun | None
    problem: str
    figures: dict[str, Any]
    markdown: str


@pytest.fixture(scope="session")
def report(lab_path: Path, thanos: RunThanos, answers: Answers, sandbox: Sandbox) -> Report:
    """slo.py report on the held-out month's 28 days, run once for the checks that read it (in the
    sandbox, whose only writable directory is its scratch)."""
    work = sandbox.scratch / "report"
    work.mkdir(parents=True, exist_ok=True)
    incidents = answers.incidents_file(work / "incidents.json")
    out = work / "out"
    command = [python(), str(learner_file(lab_path, "slo.py")), "report", "--url", thanos.url, "--cluster",
               answers.month.cluster, "--end", answers.iso(answers.end_minute), "--incidents", str(incidents),
               "--out", str(out)]  # fmt: skip
    try:
        run = run_learner(command, cwd=lab_path, timeout=120, what="slo.py report", sandbox=sandbox)
    except LearnerError as error:
        return Report(None, str(error), {}, "")
    if run.returncode != 0:
        return Report(run, f"slo.py report exited {run.returncode}: {run.tail(1)}", {}, "")
    try:
        figures = json.loads((out / "report.json").read_text())
    except (OSError, ValueError) as exc:
        return Report(run, f"report.json is missing or not JSON: {exc}", {}, "")
    markdown = (out / "report.md").read_text() if (out / "report.md").is_file() else ""
    return Report(run, "", figures if isinstance(figures, dict) else {}, markdown)
