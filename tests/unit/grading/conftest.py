"""A small lab of the grading framework's own (99-tiny), in a copy of the repository layout."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from opslab import settings as settings_module

ROOT = Path(__file__).resolve().parents[3]

GRADER = '''
import subprocess, sys, time
from pathlib import Path

from opslab.grading.fixtures import LearnerError, learner_file, python, run_learner
from opslab.grading.rubric import check

pytest_plugins = ["opslab.grading.fixtures"]


@check(points=2, section="Basics", hint="Write hello.txt containing hello.")
def test_hello_file(lab_path):
    """hello.txt says hello"""
    assert learner_file(lab_path, "hello.txt").read_text().strip() == "hello", "hello.txt does not say hello"


@check(points=3, section="Programs", hint="answer.py must print 42.", timeout=10)
def test_answer_prints_42(lab_path):
    """answer.py prints 42"""
    result = run_learner([python(), "answer.py"], cwd=lab_path, timeout=3, what="answer.py")
    assert result.returncode == 0, f"answer.py exited {result.returncode}: {result.tail()}"
    assert result.stdout.strip() == "42", f"answer.py printed {result.stdout.strip()[:40]!r}, not 42"


@check(points=1, section="Programs", hint="Never sleep in a check.", timeout=2)
def test_a_slow_check_is_stopped(lab_path):
    """a check that overruns its limit fails, and grading goes on"""
    if (lab_path / "slow").exists():
        time.sleep(30)
'''


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[settings_module.Settings, Path]:
    """A copy of the repository layout with one tiny lab (99-tiny) and a state directory."""
    root = tmp_path / "repo"
    (root / "platform").mkdir(parents=True)
    shutil.copy(ROOT / "platform" / "versions.toml", root / "platform" / "versions.toml")
    (root / "labs").mkdir()
    shutil.copy(ROOT / "labs" / "pytest.ini", root / "labs" / "pytest.ini")
    lab = root / "labs" / "99-tiny"
    (lab / "grader").mkdir(parents=True)
    (lab / "starter").mkdir()
    (lab / "lab.toml").write_text('title = "Tiny"\nminutes = 5\npass_mark = 0.8\ntime_limit = 60\n')
    (lab / "README.md").write_text("# Tiny\n")
    (lab / "hints.md").write_text("# Hints\n\n## Hint 1: first\nA.\n\n## Hint 2: second\nB.\n")
    (lab / "grader" / "test_tiny.py").write_text(GRADER)
    (lab / "starter" / "hello.txt").write_text("TODO\n")
    (lab / "starter" / "answer.py").write_text("print('TODO')\n")
    base = settings_module.load(root=root, environ={})
    settings = dataclasses.replace(base, paths=dataclasses.replace(base.paths, state=tmp_path / "state"))
    return settings, root


def solved(root: Path, answer: str = "print(42)\n") -> Path:
    work = root / "solved"
    work.mkdir()
    (work / "hello.txt").write_text("hello\n")
    (work / "answer.py").write_text(answer)
    return work
