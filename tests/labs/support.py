"""Proving a lab's grader: the solution scores full marks, the starter fails, each mutant is caught.

A mutant is a realistic mistake, written as a find/replace on a copy of the reference solution
(solutions/NN-topic/mutants.yaml). It is caught only when the check named in ``caught_by`` ran
and failed on its own assertion: a fixture error or a check that never ran proves nothing.
"""

from __future__ import annotations

import ast
import json
import shutil
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from opslab.grading.labs import Lab, all_labs
from opslab.grading.rubric import Grade
from opslab.grading.runner import grade
from opslab.runtime.lifecycle import Platform

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str
    find: str
    replace: str
    caught_by: str
    also: tuple[tuple[str, str], ...] = ()
    """Further (find, replace) edits of the same file, for a mistake that shows in two places."""

    @property
    def edits(self) -> list[tuple[str, str]]:
        return [(self.find, self.replace), *self.also]

    def apply(self, directory: Path) -> None:
        """Apply the mutant to a copy; each ``find`` must occur exactly once (no silent no-op, no ambiguity)."""
        path = directory / self.file
        text = path.read_text()
        for find, replace in self.edits:
            count = text.count(find)
            if count != 1:
                raise AssertionError(f"mutant {self.name}: its find occurs {count} times in {self.file}, not once")
            text = text.replace(find, replace)
        path.write_text(text)


def load_mutants(path: Path) -> list[Mutant]:
    items: list[dict[str, Any]] = list(yaml.safe_load(path.read_text()) or [])
    names = [item["name"] for item in items]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert not duplicates, f"{path}: mutant names used twice: {duplicates}"
    return [
        Mutant(**{**item, "also": tuple((edit["find"], edit["replace"]) for edit in item.get("also", []))})
        for item in items
    ]


def copy_submission(source: Path, work: Path, mutant: Mutant | None = None) -> Path:
    target = work / "submission"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("mutants.yaml", "__pycache__"))
    if mutant:
        mutant.apply(target)
    return target


def grade_copy(
    lab: Lab, platform: Platform, source: Path, work: Path, mutant: Mutant | None = None,
    *, cancel: threading.Event | None = None, only: list[str] | None = None, skip: list[str] | None = None,
) -> Grade:  # fmt: skip
    """Grade a copy of ``source`` (with ``mutant`` applied) against the lab's grader.

    A mutant is graded with only the check meant to catch it (plus any it depends on through
    fixtures), which proves that check can fail without re-running the whole lab. ``only`` and
    ``skip`` choose the checks of a whole-lab grading (the shop's checks are graded apart).
    """
    target = copy_submission(source, work, mutant)
    chosen = [mutant.caught_by] if mutant else only
    result, _ = grade(
        lab, platform.settings, path=target, runs_root=work / "runs", record=False, only=chosen, skip=skip,
        cancel=cancel,
    )  # fmt: skip
    return result


def shop_checks(lab: Lab) -> list[str]:
    """The lab's checks marked ``check(owns_shop=True)``: they run incidents on the platform's shop,
    one at a time, so the tests grade them in the incident world, not beside the other gradings."""
    found = []
    for path in sorted(lab.grader.glob("test_*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and any(_owns_shop(d) for d in node.decorator_list):
                found.append(node.name)
    return found


def _owns_shop(decorator: ast.expr) -> bool:
    return (
        isinstance(decorator, ast.Call)
        and isinstance(decorator.func, ast.Name)
        and decorator.func.id == "check"
        and any(k.arg == "owns_shop" and isinstance(k.value, ast.Constant) and k.value.value is True
                for k in decorator.keywords)
    )  # fmt: skip


def failed(result: Grade) -> dict[str, str]:
    return {c.id: f"{c.status}: {c.reason}" for c in result.checks if not c.passed}


def assert_caught(result: Grade, mutant: Mutant) -> None:
    checks = {c.id: c for c in result.checks}
    assert mutant.caught_by in checks, f"no check named {mutant.caught_by}"
    check = checks[mutant.caught_by]
    assert check.failed_in_call, (
        f"mutant {mutant.name} was not caught by {mutant.caught_by} "
        f"(status {check.status}, phase {check.phase or '-'}: {check.reason})"
    )


@dataclass(frozen=True)
class Track:
    """One way to solve a lab: its solution, starter and mutants (lab 2 has a kopf and a Go track)."""

    lab: Lab
    name: str  # "" for the lab's own track, else the subdirectory ("go")

    @property
    def solution(self) -> Path:
        return ROOT / "solutions" / self.lab.name / self.name

    @property
    def starter(self) -> Path:
        return self.lab.starter / self.name

    @property
    def mutants(self) -> list[Mutant]:
        return load_mutants(self.solution / "mutants.yaml")

    @property
    def label(self) -> str:
        return f"{self.lab.number}" + (f"-{self.name}" if self.name else "")

    def key(self, what: str) -> str:
        return f"{self.label}:{what}"

    @property
    def shop_checks(self) -> list[str]:
        return shop_checks(self.lab)

    def in_world(self, what: str) -> bool:
        """Whether grading ``what`` (solution, starter or a mutant's name) has a part in the incident
        world: a whole-lab grading when the lab has shop checks, a mutant when one of them catches it."""
        shop = self.shop_checks
        if what in {"solution", "starter"}:
            return bool(shop)
        return any(m.name == what and m.caught_by in shop for m in self.mutants)

    def mutant(self, name: str) -> Mutant:
        return next(m for m in self.mutants if m.name == name)

    def grade_in_world(self, platform: Platform, what: str, work: Path) -> Grade:
        """The incident world's part of grading ``what``: the shop checks of the solution or the
        starter, or the mutant with its (shop) check."""
        if what in {"solution", "starter"}:
            source = self.solution if what == "solution" else self.starter
            return grade_copy(self.lab, platform, source, work, only=self.shop_checks)
        return grade_copy(self.lab, platform, self.solution, work, self.mutant(what))


def all_tracks() -> list[Track]:
    tracks = []
    for lab in all_labs(ROOT):
        solution = ROOT / "solutions" / lab.name
        for path in sorted(solution.rglob("mutants.yaml")):
            tracks.append(Track(lab, path.parent.relative_to(solution).as_posix().strip(".")))
    return tracks


class Concurrent:
    """Grades copies ``jobs`` at a time on one platform (each run is isolated); results by key.

    How long each grading took is kept in ``history`` (a JSON file in opslab's cache, so it outlives
    the clone): the next session submits the longest first, so no long grading starts last and
    keeps the session waiting after everything else is done (longest-processing-time-first)."""

    def __init__(self, platform: Platform, work: Path, jobs: int, history: Path | None = None) -> None:
        self.platform, self.work = platform, work
        self.pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="grade")
        self.futures: dict[str, Future[Grade]] = {}
        self.cancel = threading.Event()
        self.history = history
        self.seconds: dict[str, float] = {}

    def expected(self, key: str) -> float:
        """How long grading ``key`` took last time (0 when unknown)."""
        if self.history is None or not self.history.is_file():
            return 0.0
        try:
            known = json.loads(self.history.read_text())
        except ValueError:
            return 0.0
        value = known.get(key, 0.0) if isinstance(known, dict) else 0.0
        return float(value) if isinstance(value, int | float) else 0.0

    def submit(
        self, key: str, lab: Lab, source: Path, mutant: Mutant | None = None, skip: list[str] | None = None
    ) -> None:
        work = self.work / key.replace(":", "-").replace("/", "-")
        work.mkdir(parents=True)

        def timed() -> Grade:
            began = time.monotonic()
            result = grade_copy(lab, self.platform, source, work, mutant, cancel=self.cancel, skip=skip)
            self.seconds[key] = round(time.monotonic() - began, 1)
            return result

        self.futures[key] = self.pool.submit(timed)

    def remember(self) -> None:
        """Add this session's grading times to the history (a grading that did not finish keeps its old time)."""
        if self.history is None or not self.seconds:
            return
        try:
            known = json.loads(self.history.read_text()) if self.history.is_file() else {}
        except ValueError:
            known = {}
        merged = {**(known if isinstance(known, dict) else {}), **self.seconds}
        self.history.parent.mkdir(parents=True, exist_ok=True)
        partial = self.history.with_suffix(".partial")
        partial.write_text(json.dumps(merged, indent=1, sort_keys=True) + "\n")
        partial.replace(self.history)

    def result(self, key: str) -> Grade:
        return self.futures[key].result()

    def close(self) -> None:
        """Stop: gradings not started are dropped, running ones are stopped (an interrupted session
        ends in seconds and leaves no grader behind); every run is swept."""
        self.cancel.set()
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.remember()
