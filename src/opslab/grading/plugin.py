"""The rubric pytest plugin: records each check's points, outcome, reason and hint.

Loaded by the grading runner with ``-p opslab.grading.plugin --rubric-json FILE``. A test without
the ``check`` mark is a collection error in a grader: every test must be worth something.

The grade file is written as soon as the checks are collected (every check "not-run") and again
after each check, so a grading stopped at any point, even by SIGKILL, leaves a grade in which the
checks that did not finish score zero and stay in the total. ``--rubric-list FILE`` writes the
collected checks (id, title, section, points, hint, time limit) without running any.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from opslab.grading.rubric import CheckResult, Grade
from opslab.primitives.files import write_atomic

_ASSERT_DETAIL = re.compile(r"\n(assert |where |\+  where ).*", re.DOTALL)
_EXCEPTION_PREFIX = re.compile(r"^(?:[\w.]*\.)?(?:AssertionError|LearnerError|Failed): ")
NOT_RUN = "the check did not run: the grading was stopped before it"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rubric", "opslab rubric")
    group.addoption("--rubric-json", default=None, help="write the grade as JSON here")
    group.addoption("--rubric-list", default=None, help="write the collected checks as JSON here (run none)")
    group.addoption("--rubric-lab", default="", help="the lab's name")
    group.addoption("--rubric-path", default="", help="the learner's directory being graded")
    group.addoption("--rubric-pass-mark", type=float, default=0.8, help="share of points needed to pass")
    group.addoption("--rubric-time-limit", type=float, default=0.0, help="the lab's overall limit, in seconds")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "check(points, hint, timeout, section): a graded rubric check")
    if config.getoption("--rubric-json") or config.getoption("--rubric-list"):
        config.pluginmanager.register(RubricRecorder(config), "opslab-rubric-recorder")


def reason_of(report: pytest.TestReport) -> str:
    """The learner-facing reason of a failed check: the assertion's message, one or two lines."""
    crash = getattr(report.longrepr, "reprcrash", None)
    message = crash.message if crash is not None else str(report.longrepr)
    message = _ASSERT_DETAIL.sub("", message)
    message = _EXCEPTION_PREFIX.sub("", message, count=1)
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return " ".join(lines[:3])[:600] or "the check failed"


def title_of(item: pytest.Item) -> str:
    doc = (getattr(getattr(item, "function", None), "__doc__", None) or "").strip().splitlines()
    return doc[0] if doc else item.name.removeprefix("test_").replace("_", " ")


def unrun(item: pytest.Item, reason: str = NOT_RUN) -> CheckResult:
    """The result of a check that has not run (yet): zero points, in the total."""
    mark = item.get_closest_marker("check")
    assert mark is not None
    return CheckResult(
        id=item.name, title=title_of(item), section=str(mark.kwargs.get("section", "Checks")),
        points=int(mark.kwargs["points"]), earned=0, status="not-run", reason=reason,
        hint=str(mark.kwargs["hint"]), seconds=0.0, phase="", timeout=float(mark.kwargs.get("timeout", 60)),
        owns_shop=bool(mark.kwargs.get("owns_shop", False)),
    )  # fmt: skip


class RubricRecorder:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.grade = Grade(
            lab=config.getoption("--rubric-lab"),
            path=config.getoption("--rubric-path"),
            pass_mark=config.getoption("--rubric-pass-mark"),
            started=time.time(),
            time_limit=config.getoption("--rubric-time-limit"),
        )
        self.items: list[pytest.Item] = []
        self.results: dict[str, CheckResult] = {}
        self.durations: dict[str, float] = {}

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            if item.get_closest_marker("check") is None:
                raise pytest.UsageError(
                    f"{item.nodeid} has no @check(points=..., hint=...): every grader test needs one"
                )

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Every check that will run is in the grade from now on, scoring zero until it passes."""
        self.items = list(session.items)
        self.results = {item.nodeid: unrun(item) for item in self.items}
        listing = self.config.getoption("--rubric-list")
        if listing:
            write_atomic(Path(listing), json.dumps([asdict(r) for r in self.results.values()], indent=1))
            session.config.option.collectonly = True
            return
        self.write()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
        outcome = yield
        report: pytest.TestReport = outcome.get_result()
        mark = item.get_closest_marker("check")
        assert mark is not None
        self.durations[item.nodeid] = self.durations.get(item.nodeid, 0.0) + report.duration
        if report.when == "call" or (report.when == "setup" and not report.passed):
            status, reason = "passed", ""
            limit = float(mark.kwargs.get("timeout", 60))
            if report.failed:
                reason = reason_of(report)
                if "Timeout" in reason and ">" in reason:
                    status, reason = "timeout", f"the check took longer than its {limit:.0f} s limit"
                else:
                    status = "error" if report.when == "setup" else "failed"
            elif report.skipped:
                status, reason = "failed", reason_of(report)
            points = int(mark.kwargs["points"])
            self.results[item.nodeid] = CheckResult(
                id=item.name, title=title_of(item), section=str(mark.kwargs.get("section", "Checks")),
                points=points, earned=points if status == "passed" else 0, status=status, reason=reason,
                hint=str(mark.kwargs["hint"]), seconds=round(self.durations[item.nodeid], 2),
                phase="" if status == "passed" else report.when, timeout=limit,
                owns_shop=bool(mark.kwargs.get("owns_shop", False)),
            )  # fmt: skip
        if report.when == "teardown":
            self.write()

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.config.getoption("--rubric-list"):
            return
        self.write()

    def write(self) -> None:
        self.grade.checks = list(self.results.values())
        self.grade.seconds = round(time.time() - self.grade.started, 2)
        write_atomic(Path(self.config.getoption("--rubric-json")), self.grade.to_json())
