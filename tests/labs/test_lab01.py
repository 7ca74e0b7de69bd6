"""Lab 1's grader can tell right from wrong: full marks for the solution, a fail for the starter,
and every broken variant caught by the check meant for it."""

from __future__ import annotations

from pathlib import Path

import pytest

from opslab.grading.labs import find_lab
from opslab.runtime.lifecycle import Platform
from tests.labs.support import ROOT, failed, grade_copy, mutants

pytestmark = [pytest.mark.platform, pytest.mark.slow]
LAB = find_lab(ROOT, 1)


def test_the_solution_scores_full_marks(platform: Platform, tmp_path: Path) -> None:
    result = grade_copy(LAB, platform, ROOT / "solutions" / LAB.name, tmp_path)
    assert not result.problem, result.problem
    assert len(result.checks) >= 10
    assert result.earned == result.total, failed(result)
    assert result.passed


def test_the_untouched_starter_fails_with_reasons_and_hints(platform: Platform, tmp_path: Path) -> None:
    result = grade_copy(LAB, platform, LAB.starter, tmp_path)
    assert not result.passed and result.score < 0.3, f"the starter scores {result.score:.0%}"
    for item in result.checks:
        if not item.passed:
            assert item.reason and item.hint, f"{item.id} fails without a reason or hint"
            assert "Traceback" not in item.reason


@pytest.mark.parametrize("mutant", mutants(LAB), ids=lambda m: m["name"])
def test_each_broken_variant_is_caught(platform: Platform, tmp_path: Path, mutant: dict) -> None:
    result = grade_copy(LAB, platform, ROOT / "solutions" / LAB.name, tmp_path, mutant)
    assert mutant["caught_by"] in {c.id for c in result.checks}, f"no check named {mutant['caught_by']}"
    assert mutant["caught_by"] in failed(result), (
        f"mutant {mutant['name']} was not caught by {mutant['caught_by']}; failed: {failed(result)}"
    )
    assert not result.passed or result.score < 1.0
