"""Scoring that cannot pass by accident: a check that fails, errors in a fixture, times out or
never runs scores zero and stays in the total; a grading cut by its overall limit (or killed) never
passes and names the checks that did not run; every lab's overall limit covers its checks."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from opslab import settings as settings_module
from opslab.grading.labs import all_labs, find_lab
from opslab.grading.rubric import CheckResult, Grade
from opslab.grading.runner import grade, list_checks
from tests.unit.grading.conftest import ROOT

# A lab whose first check is worth nearly everything: any scoring that drops the checks that did
# not finish from the total passes it.
HEAVY_FIRST = '''
import os, signal, time
import pytest
from opslab.grading.rubric import check

pytest_plugins = ["opslab.grading.fixtures"]


@pytest.fixture
def broken_fixture(lab_path):
    if (lab_path / "fixture-breaks").exists():
        raise RuntimeError("the fixture could not set up")


@check(points=20, section="A", hint="h1", timeout=10)
def test_big(lab_path):
    """the big check"""


@check(points=1, section="B", hint="h2", timeout=30)
def test_slow(lab_path, broken_fixture):
    """the slow check"""
    if (lab_path / "hang").exists():
        time.sleep(25)
    if (lab_path / "die").exists():
        os.kill(os.getpid(), signal.SIGKILL)


@check(points=1, section="B", hint="h3", timeout=10)
def test_last(lab_path):
    """the last check"""
'''


@pytest.fixture
def heavy(tiny: tuple[settings_module.Settings, Path]) -> tuple[settings_module.Settings, Path]:
    settings, root = tiny
    grader = root / "labs" / "99-tiny" / "grader"
    (grader / "test_tiny.py").write_text(HEAVY_FIRST)
    return settings, root


def work(root: Path, *flags: str) -> Path:
    directory = root / "work"
    directory.mkdir(exist_ok=True)
    (directory / "answer.txt").write_text("anything\n")
    for flag in flags:
        (directory / flag).write_text("")
    return directory


def by_id(result: Grade) -> dict[str, CheckResult]:
    return {c.id: c for c in result.checks}


def test_a_fixture_error_scores_zero_and_stays_in_the_total(heavy: tuple[settings_module.Settings, Path]) -> None:
    settings, root = heavy
    result, _ = grade(find_lab(root, 99), settings, path=work(root, "fixture-breaks"))
    slow = by_id(result)["test_slow"]
    assert (slow.status, slow.phase, slow.earned) == ("error", "setup", 0)
    assert "the fixture could not set up" in slow.reason
    assert result.total == 22 and result.earned == 21
    assert not slow.failed_in_call, "a fixture error is not the check's own failure"


def test_a_grading_cut_by_its_limit_never_passes_and_names_what_did_not_run(
    heavy: tuple[settings_module.Settings, Path],
) -> None:
    settings, root = heavy
    began = time.monotonic()
    result, _ = grade(find_lab(root, 99), settings, path=work(root, "hang"), timeout=6)
    assert time.monotonic() - began < 40, "the grading was not stopped at its limit"
    checks = by_id(result)
    assert checks["test_big"].passed
    assert checks["test_slow"].status == "not-run" and checks["test_last"].status == "not-run"
    assert result.total == 22 and result.earned == 20, "checks that did not run left the total"
    assert result.score < 1 and not result.passed, "a cut grading passed"
    assert "stopped at its overall limit of 6 s" in result.problem
    assert "test_slow" in result.problem and "test_last" in result.problem


def test_a_killed_grader_leaves_a_grade_that_does_not_pass(heavy: tuple[settings_module.Settings, Path]) -> None:
    settings, root = heavy
    result, run_dir = grade(find_lab(root, 99), settings, path=work(root, "die"))
    checks = by_id(result)
    assert checks["test_big"].passed
    assert checks["test_slow"].status == "not-run" and checks["test_last"].status == "not-run"
    assert result.total == 22 and not result.passed
    assert "test_slow" in result.problem
    assert Grade.load(run_dir / "grade.json").problem == result.problem


def test_a_grade_with_an_unrun_check_never_passes() -> None:
    ran = CheckResult("a", "a", "S", 9, 9, "passed", "", "h", 1.0, "", 10)
    unrun = CheckResult("b", "b", "S", 1, 0, "not-run", "did not run", "h", 0.0, "", 10)
    assert Grade(lab="x", path="p", checks=[ran]).passed
    assert not Grade(lab="x", path="p", checks=[ran, unrun]).passed


def test_collected_checks_carry_their_points_and_limits(heavy: tuple[settings_module.Settings, Path]) -> None:
    settings, root = heavy
    checks = list_checks(find_lab(root, 99), settings)
    assert [(c.id, c.points, c.timeout, c.status) for c in checks] == [
        ("test_big", 20, 10, "not-run"), ("test_slow", 1, 30, "not-run"), ("test_last", 1, 10, "not-run"),
    ]  # fmt: skip
    assert checks[0].title == "the big check" and checks[1].section == "B"


@pytest.mark.parametrize("lab", all_labs(ROOT), ids=lambda lab: lab.name)
def test_each_labs_overall_limit_covers_its_checks(lab: object) -> None:
    """lab.toml's time_limit >= the sum of the checks' own limits + the time before the first check."""
    settings = settings_module.load(root=ROOT, environ={})
    checks = list_checks(lab, settings)  # type: ignore[arg-type]
    needed = sum(c.timeout for c in checks) + lab.setup_limit  # type: ignore[attr-defined]
    assert checks, f"{lab} has no checks"
    assert lab.time_limit >= needed, (  # type: ignore[attr-defined]
        f"{lab.name}: time_limit {lab.time_limit:.0f} s < {needed:.0f} s (checks + setup_limit)"  # type: ignore[attr-defined]
    )
