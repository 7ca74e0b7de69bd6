"""The rubric: what a grader's checks are worth, and the typed result of grading.

A check is a pytest test function in labs/NN-topic/grader/, marked with ``@check``:

    @check(points=3, hint="Spread over topology.kubernetes.io/zone.", timeout=60, section="Placement")
    def test_checkout_spreads_across_zones(lab): ...

Its first docstring line (or its name) is the title shown to the learner. The rubric plugin
(opslab.grading.plugin) turns each check's outcome into a CheckResult; a Grade sums them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

F = TypeVar("F", bound=Callable[..., Any])


def check(*, points: int, hint: str, timeout: float = 60, section: str = "Checks") -> Callable[[F], F]:
    """Mark a grader test as a rubric check worth ``points``, with a hint and a time limit."""
    if points <= 0:
        raise ValueError("a check is worth at least one point")
    if not hint.strip():
        raise ValueError("every check needs a hint")

    def mark(function: F) -> F:
        function = pytest.mark.timeout(timeout)(function)
        return pytest.mark.check(points=points, hint=hint, timeout=timeout, section=section)(function)

    return mark


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome, as the learner sees it."""

    id: str
    title: str
    section: str
    points: int
    earned: int
    status: str  # passed | failed | error | timeout
    reason: str
    hint: str
    seconds: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass
class Grade:
    """The result of grading one lab."""

    lab: str
    path: str
    checks: list[CheckResult] = field(default_factory=list)
    pass_mark: float = 0.8
    """Share of the points needed to pass."""
    started: float = 0.0
    seconds: float = 0.0
    problem: str = ""
    """A problem that kept the grader from running at all (then every check scores zero)."""

    @property
    def earned(self) -> int:
        return sum(c.earned for c in self.checks)

    @property
    def total(self) -> int:
        return sum(c.points for c in self.checks)

    @property
    def score(self) -> float:
        return self.earned / self.total if self.total else 0.0

    @property
    def passed(self) -> bool:
        return not self.problem and self.total > 0 and self.score >= self.pass_mark - 1e-9

    def to_json(self) -> str:
        data = asdict(self)
        data.update(earned=self.earned, total=self.total, score=round(self.score, 4), passed=self.passed)
        return json.dumps(data, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Grade:
        data = json.loads(text)
        checks = [CheckResult(**c) for c in data.pop("checks")]
        for derived in ("earned", "total", "score", "passed"):
            data.pop(derived, None)
        return cls(checks=checks, **data)

    @classmethod
    def load(cls, path: Path) -> Grade:
        return cls.from_json(path.read_text())
