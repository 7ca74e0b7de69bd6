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


def check(
    *, points: int, hint: str, timeout: float = 60, section: str = "Checks", owns_shop: bool = False
) -> Callable[[F], F]:
    """Mark a grader test as a rubric check worth ``points``, with a hint and a time limit.

    ``owns_shop``: the check runs incidents on the platform's shop, which holds one at a time, so it
    cannot share the platform with another such check (or a person's incident) while it runs."""
    if points <= 0:
        raise ValueError("a check is worth at least one point")
    if not hint.strip():
        raise ValueError("every check needs a hint")

    def mark(function: F) -> F:
        function = pytest.mark.timeout(timeout)(function)
        marked = pytest.mark.check(points=points, hint=hint, timeout=timeout, section=section, owns_shop=owns_shop)
        return marked(function)

    return mark


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome, as the learner sees it."""

    id: str
    title: str
    section: str
    points: int
    earned: int
    status: str
    """passed | failed (the check's assertion) | error (a fixture failed) | timeout | not-run."""
    reason: str
    hint: str
    seconds: float
    phase: str = ""
    """Where a failure happened: "setup" (a fixture), "call" (the check itself) or "" (not run)."""
    timeout: float = 0.0
    """The check's own time limit, in seconds."""
    owns_shop: bool = False
    """The check runs incidents on the platform's shop (see ``check``)."""

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def failed_in_call(self) -> bool:
        """The check itself ran and failed (not a fixture, not a check that never ran)."""
        return self.status in {"failed", "timeout"} and self.phase == "call"


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
    """A problem that kept the grading from finishing: the grade never passes, whatever it scored."""
    time_limit: float = 0.0
    """The lab's overall limit (lab.toml), in seconds."""

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
    def not_run(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status == "not-run"]

    @property
    def passed(self) -> bool:
        """At the pass mark, with every check run and no problem (a cut run never passes)."""
        if self.problem or self.total == 0 or self.not_run:
            return False
        return self.score >= self.pass_mark - 1e-9

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
