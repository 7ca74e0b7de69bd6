"""The grading framework on a small lab of its own: points, reasons, hints, time limits, crashes,
reports, hints and the instructor's gradebook. No platform is needed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import psutil
import pytest

from opslab import settings as settings_module
from opslab.grading import hints
from opslab.grading.fixtures import eventually
from opslab.grading.gradebook import grade_submissions, tampering, use_graders, worked_tracks
from opslab.grading.labs import find_lab
from opslab.grading.runner import GradingCancelled, grade, history, select
from opslab.primitives.errors import ConfigError
from tests.unit.grading.conftest import solved

ROOT = Path(__file__).resolve().parents[3]


def test_a_right_answer_scores_full_marks_with_reports(tiny: tuple[settings_module.Settings, Path]) -> None:
    settings, root = tiny
    lab = find_lab(root, 99)
    result, run_dir = grade(lab, settings, path=solved(root))
    assert (result.earned, result.total, result.passed) == (6, 6, True), result
    assert [c.section for c in result.checks] == ["Basics", "Programs", "Programs"]
    suite = ET.parse(run_dir / "junit.xml").getroot()
    assert "tests" in suite.attrib or suite.find("testsuite") is not None
    assert (run_dir / "grade.json").is_file()
    assert history(settings, lab)[-1].passed


def test_the_starter_fails_each_check_with_its_reason_and_hint(tiny: tuple[settings_module.Settings, Path]) -> None:
    settings, root = tiny
    result, _ = grade(find_lab(root, 99), settings)
    failed = {c.id: c for c in result.checks if not c.passed}
    assert set(failed) == {"test_hello_file", "test_answer_prints_42"}
    assert failed["test_hello_file"].reason == "hello.txt does not say hello"
    assert failed["test_hello_file"].hint == "Write hello.txt containing hello."
    assert failed["test_answer_prints_42"].reason == "answer.py printed 'TODO', not 42"
    assert not result.passed and result.earned == 1


def test_a_grading_can_leave_checks_out_or_take_only_some(tiny: tuple[settings_module.Settings, Path]) -> None:
    """``skip`` (the shop's checks, graded elsewhere) and ``only`` (a mutant's check) choose what runs."""
    settings, root = tiny
    lab = find_lab(root, 99)
    answer = solved(root)
    result, _ = grade(lab, settings, path=answer, skip=["test_answer_prints_42", "test_a_slow_check_is_stopped"])
    assert [c.id for c in result.checks] == ["test_hello_file"] and result.earned == result.total == 2
    result, _ = grade(lab, settings, path=answer, only=["test_hello_file", "test_answer_prints_42"],
                      skip=["test_answer_prints_42"])  # fmt: skip
    assert [c.id for c in result.checks] == ["test_hello_file"]
    assert select([], []) == "" and select(["a"], ["b", "c"]) == "(a) and not (b or c)"


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("import time\ntime.sleep(60)\n", "answer.py did not finish within 3 s and was stopped"),
        ("raise SystemExit(3)\n", "answer.py exited 3"),
        ("print('4' * 100000)\n", "answer.py printed '4444"),
        ("def broken(:\n", "answer.py exited 1"),
    ],
)
def test_a_learner_program_that_hangs_crashes_or_rambles_only_fails_its_check(
    tiny: tuple[settings_module.Settings, Path], answer: str, reason: str
) -> None:
    settings, root = tiny
    result, _ = grade(find_lab(root, 99), settings, path=solved(root, answer))
    check = next(c for c in result.checks if c.id == "test_answer_prints_42")
    assert not check.passed and check.reason.startswith(reason), check.reason
    assert "Traceback" not in check.reason
    assert next(c for c in result.checks if c.id == "test_hello_file").passed, "the other checks still ran"


def test_a_check_over_its_time_limit_is_failed_and_grading_continues(
    tiny: tuple[settings_module.Settings, Path],
) -> None:
    settings, root = tiny
    work = solved(root)
    (work / "slow").write_text("")
    result, _ = grade(find_lab(root, 99), settings, path=work)
    slow = next(c for c in result.checks if c.id == "test_a_slow_check_is_stopped")
    assert slow.status == "timeout" and slow.reason == "the check took longer than its 2 s limit"
    assert result.earned == 5


def test_bad_input_is_refused_or_scored_zero(tiny: tuple[settings_module.Settings, Path], tmp_path: Path) -> None:
    settings, root = tiny
    lab = find_lab(root, 99)
    with pytest.raises(ConfigError, match="there is no lab '7'; choose one of: 99 \\(Tiny\\)"):
        find_lab(root, "7")
    with pytest.raises(ConfigError, match=r"--path .* does not exist"):
        grade(lab, settings, path=tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    result, _ = grade(lab, settings, path=empty)
    assert result.earned == 0 and all("is empty" in c.reason for c in result.checks)


def test_hints_are_revealed_one_at_a_time(tiny: tuple[settings_module.Settings, Path]) -> None:
    settings, root = tiny
    lab = find_lab(root, 99)
    state = settings.paths.state
    assert hints.reveal(state, lab) == (["## Hint 1: first\nA."], 2)
    assert hints.reveal(state, lab) == (["## Hint 2: second\nB."], 2)
    assert hints.reveal(state, lab)[0][0].startswith("All 2 hints are revealed")
    assert len(hints.reveal(state, lab, show_all=True)[0]) == 2


def test_a_track_has_hints_of_its_own(tiny: tuple[settings_module.Settings, Path]) -> None:
    settings, root = tiny
    (root / "labs" / "99-tiny" / "hints.go.md").write_text("# Go\n\n## Hint 1: go first\nG.\n")
    lab = find_lab(root, 99)
    state = settings.paths.state
    assert lab.hint_tracks() == ["", "go"]
    assert hints.reveal(state, lab, track="go") == (["## Hint 1: go first\nG."], 1)
    assert hints.reveal(state, lab) == (["## Hint 1: first\nA."], 2), "the default track starts at its first hint"
    assert hints.revealed_count(state, lab, "go") == 1 and hints.revealed_count(state, lab) == 1
    with pytest.raises(ConfigError, match="lab 99 has no 'rust' track; its tracks are: go"):
        hints.reveal(state, lab, track="rust")


def test_the_gradebook_uses_the_instructors_grader_and_flags_tampering(
    tiny: tuple[settings_module.Settings, Path], tmp_path: Path
) -> None:
    settings, root = tiny
    lab = find_lab(root, 99)
    submissions = tmp_path / "class"
    for learner, answer in (("ada", "print(42)\n"), ("bob", "print(41)\n")):
        work = submissions / learner / "labs" / lab.name
        shutil.copytree(lab.directory, work)
        (work / "starter" / "hello.txt").write_text("hello\n")
        (work / "starter" / "answer.py").write_text(answer)
    cheat = submissions / "bob" / "labs" / lab.name / "grader" / "test_tiny.py"
    cheat.write_text(cheat.read_text().replace('== "42"', '!= "nothing"'))
    assert tampering(submissions / "bob", lab) is not None and tampering(submissions / "ada", lab) is None
    book = grade_submissions(settings, submissions, [lab], out=tmp_path / "book")
    assert book.grades["ada"][lab.name].passed
    assert not book.grades["bob"][lab.name].passed, "bob's edited grader was not used"
    assert any("bob" in t for t in book.tampered)
    rows = book.csv.read_text().splitlines()
    assert any(r.startswith("bob,99-tiny,test_answer_prints_42") for r in rows)
    assert "tampered" in book.html.read_text().lower()


def test_the_gradebook_grades_the_track_a_learner_worked_on(
    tiny: tuple[settings_module.Settings, Path], tmp_path: Path
) -> None:
    settings, root = tiny
    lab = find_lab(root, 99)
    (lab.starter / "alt").mkdir()
    (lab.starter / "alt" / "hello.txt").write_text("TODO\n")
    (lab.starter / "alt" / "answer.py").write_text("print('TODO')\n")
    submissions = tmp_path / "class"
    for learner in ("ada", "cy", "dee"):
        shutil.copytree(lab.directory, submissions / learner / "labs" / lab.name)
    ada = submissions / "ada" / "labs" / lab.name / "starter"
    (ada / "alt" / "hello.txt").write_text("hello\n")  # ada works on the alt track only
    (ada / "alt" / "answer.py").write_text("print(42)\n")
    cy = submissions / "cy" / "labs" / lab.name / "starter"
    (cy / "hello.txt").write_text("hello\n")  # cy works on the default track only
    assert worked_tracks(submissions / "ada", lab) == [ada / "alt"]
    assert worked_tracks(submissions / "cy", lab) == [cy]
    assert worked_tracks(submissions / "dee", lab) == [submissions / "dee" / "labs" / lab.name / "starter"]
    book = grade_submissions(settings, submissions, [lab], out=tmp_path / "book")
    assert book.grades["ada"][lab.name].earned == 6, "ada's alt track was not the one graded"
    assert book.grades["cy"][lab.name].earned == 3  # hello.txt and the slow check
    assert book.grades["dee"][lab.name].earned == 1  # the untouched starter: only the slow check


def class_of(root: Path, lab_name: str, where: Path) -> Path:
    """Four learners: full marks, a wrong answer, a missing program, the untouched starter."""
    answers = {"ada": ("hello", "print(42)"), "bob": ("hello", "print(41)"), "cy": ("hello", None), "dee": None}
    for learner, work in answers.items():
        starter = where / learner / "labs" / lab_name / "starter"
        shutil.copytree(root / "labs" / lab_name / "starter", starter)
        if work is not None:
            (starter / "hello.txt").write_text(work[0] + "\n")
            if work[1] is None:
                (starter / "answer.py").unlink()
            else:
                (starter / "answer.py").write_text(work[1] + "\n")
    return where


def test_concurrent_grading_equals_sequential_grading(
    tiny: tuple[settings_module.Settings, Path], tmp_path: Path
) -> None:
    settings, root = tiny
    lab = find_lab(root, 99)
    submissions = class_of(root, lab.name, tmp_path / "class")

    def scores(jobs: int) -> dict[tuple[str, str], tuple[str, int]]:
        book = grade_submissions(settings, submissions, [lab], out=tmp_path / f"jobs-{jobs}", jobs=jobs)
        return {(who, c.id): (c.status, c.earned) for who, row in book.grades.items() for c in row[lab.name].checks}

    sequential = scores(1)
    assert scores(3) == sequential
    assert {who for who, _ in sequential} == {"ada", "bob", "cy", "dee"}
    assert sequential["ada", "test_answer_prints_42"] == ("passed", 3)
    assert sequential["bob", "test_answer_prints_42"][1] == 0
    with pytest.raises(ConfigError, match="--jobs 0"):
        grade_submissions(settings, submissions, [lab], out=tmp_path / "none", jobs=0)


def test_an_instructors_graders_add_held_out_checks_without_flagging_tampering(
    tiny: tuple[settings_module.Settings, Path], tmp_path: Path
) -> None:
    settings, root = tiny
    lab = find_lab(root, 99)
    graders = tmp_path / "graders"
    shutil.copytree(lab.grader, graders / lab.name / "grader")
    held_out = graders / lab.name / "grader" / "test_held_out.py"
    held_out.write_text(
        "from opslab.grading.rubric import check\n\n"
        "@check(points=1, section='Held out', hint='answer.py prints only 42.')\n"
        "def test_held_out(lab_path):\n"
        '    """answer.py has no TODO left"""\n'
        "    assert 'TODO' not in (lab_path / 'answer.py').read_text(), 'answer.py still has a TODO'\n"
    )
    submissions = class_of(root, lab.name, tmp_path / "class")
    for learner in ("ada", "bob"):  # learners' copies of the grader, as cloned: no held-out case
        shutil.copytree(lab.grader, submissions / learner / "labs" / lab.name / "grader")
    (chosen,) = use_graders([lab], graders)
    assert chosen.grader == graders / lab.name / "grader"
    book = grade_submissions(settings, submissions, [chosen], out=tmp_path / "book")
    assert "test_held_out" in {c.id for c in book.grades["ada"][lab.name].checks}
    assert book.grades["ada"][lab.name].earned == book.grades["ada"][lab.name].total
    assert not book.tampered, "held-out cases of the instructor are not tampering by the learner"
    with pytest.raises(ConfigError, match="has no grader for 99-tiny"):
        use_graders([lab], tmp_path)
    with pytest.raises(ConfigError, match="is not a directory"):
        use_graders([lab], tmp_path / "missing")


def test_reset_restores_the_starter_from_git(tiny: tuple[settings_module.Settings, Path]) -> None:
    settings, root = tiny
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "starter"], check=True)
    starter = root / "labs" / "99-tiny" / "starter"
    (starter / "hello.txt").write_text("my work\n")
    (starter / "extra.py").write_text("x = 1\n")
    result = subprocess.run(
        [sys.executable, "-m", "opslab", "lab", "reset", "99", "--yes"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "OPSLAB_ROOT": str(root), "OPSLAB_STATE_DIR": str(settings.paths.state)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (starter / "hello.txt").read_text() == "TODO\n"
    assert not (starter / "extra.py").exists()


def test_eventually_waits_for_a_truthy_value_and_is_bounded() -> None:
    calls = iter([None, ValueError("not yet"), 0, "ready"])

    def predicate() -> object:
        value = next(calls)
        if isinstance(value, Exception):
            raise value
        return value

    assert eventually(predicate, 5, interval=0.01) == "ready"
    began = time.monotonic()
    assert eventually(lambda: [], 0.2, interval=0.05) == []
    assert time.monotonic() - began < 1.0


WAITS = """
import time

from opslab.grading.rubric import check

pytest_plugins = ["opslab.grading.fixtures"]


@check(points=1, section="Programs", hint="-", timeout=120)
def test_waits(lab_path):
    \"\"\"a check that takes its time\"\"\"
    (lab_path / "started").write_text("")
    time.sleep(100)
"""


def test_a_cancelled_grading_stops_its_grader_within_seconds(tiny: tuple[settings_module.Settings, Path]) -> None:
    """An interrupted test session cancels its gradings: none runs on to its limit, none is left behind."""
    settings, root = tiny
    lab_dir = root / "labs" / "99-tiny"
    (lab_dir / "grader" / "test_waits.py").write_text(WAITS)
    (lab_dir / "lab.toml").write_text('title = "Tiny"\nminutes = 5\npass_mark = 0.8\ntime_limit = 200\n')
    work = solved(root)
    cancel, outcome = threading.Event(), []

    def run() -> None:
        try:
            grade(find_lab(root, 99), settings, path=work, cancel=cancel)
        except BaseException as exc:  # the test reads what ended it
            outcome.append(exc)

    def graders() -> list[psutil.Process]:
        mine = str(lab_dir / "grader")
        return [p for p in psutil.process_iter(["cmdline"]) if mine in " ".join(p.info["cmdline"] or [])]

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    assert eventually((work / "started").exists, 60), "the waiting check never started"
    began = time.monotonic()
    cancel.set()
    worker.join(30)
    assert not worker.is_alive() and len(outcome) == 1 and isinstance(outcome[0], GradingCancelled), outcome
    assert time.monotonic() - began < 20, "the grading ran on after it was cancelled"
    assert eventually(lambda: not graders(), 10), f"a grader outlived its cancelled grading: {graders()}"
