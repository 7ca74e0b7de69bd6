"""Lab 9 grader: the learner's rules and report against a month they have not seen, served by a
Thanos of the run's own (see support.py)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import Answers, RunThanos, heldout_month, prepare_bucket

from opslab.grading.fixtures import LearnerError, LearnerRun, learner_file, python, run_learner
from opslab.grading.sandbox import Sandbox
from opslab.runtime import history

pytest_plugins = ["opslab.grading.fixtures"]
BUCKET = pytest.StashKey[Path | str]()
"""The run's bucket, or why it could not be made."""


def pytest_collection_finish(session: pytest.Session) -> None:
    """Make (or find in the day's cache) the compacted months before the first check: 30-90 s the
    first time on a machine each day, counted against lab.toml's setup_limit, not a check's."""
    if not os.environ.get("OPSLAB_LAB_PATH") or session.config.getoption("--rubric-list", None):
        return
    if not any("thanos" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    began = time.monotonic()
    try:
        session.config.stash[BUCKET] = prepare_bucket(heldout_month())
        outcome = "ready"
    except Exception as exc:
        session.config.stash[BUCKET] = f"the held-out month could not be prepared: {exc}"
        outcome = "failed"
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"lab 9: the held-out month {outcome} in {time.monotonic() - began:.0f} s")


@pytest.fixture(scope="session")
def bucket(request: pytest.FixtureRequest) -> Path:
    made = request.config.stash.get(BUCKET, None)
    if made is None:
        made = prepare_bucket(heldout_month())
    if isinstance(made, str):
        pytest.fail(made)
    return made


@pytest.fixture(scope="session")
def answers(bucket: Path) -> Answers:
    """The held-out month's answers, for the day its bucket was made (its marker says which)."""
    generated = history.Generated(**json.loads((bucket / history.MARKER).read_text()))
    return Answers(heldout_month(), generated)


@pytest.fixture(scope="session")
def thanos(bucket: Path, answers: Answers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunThanos]:
    running = RunThanos(bucket, tmp_path_factory.mktemp("thanos"), answers.end)
    yield running
    running.stop()


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
               answers.month.cluster, "--end", answers.iso(history.minutes() - 1), "--incidents", str(incidents),
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
