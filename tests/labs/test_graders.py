"""Every lab's grader can tell right from wrong: the reference solution scores full marks, the
untouched starter fails with reasons and hints, and every broken variant of the solution (the
mutants in solutions/NN-topic/mutants.yaml) is caught by the check meant for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from opslab.grading.labs import Lab, all_labs
from opslab.runtime.lifecycle import Platform
from tests.labs.support import ROOT, failed, grade_copy, mutants

pytestmark = [pytest.mark.platform, pytest.mark.slow]
LABS = all_labs(ROOT)
MUTANTS = [(lab, mutant) for lab in LABS for mutant in mutants(lab)]


@pytest.mark.parametrize("lab", LABS, ids=lambda lab: lab.name)
def test_the_solution_scores_full_marks(lab: Lab, platform: Platform, tmp_path: Path) -> None:
    result = grade_copy(lab, platform, ROOT / "solutions" / lab.name, tmp_path)
    assert not result.problem, result.problem
    assert len(result.checks) >= 8
    assert result.earned == result.total, failed(result)
    assert result.passed


@pytest.mark.parametrize("lab", LABS, ids=lambda lab: lab.name)
def test_the_untouched_starter_fails_with_reasons_and_hints(lab: Lab, platform: Platform, tmp_path: Path) -> None:
    result = grade_copy(lab, platform, lab.starter, tmp_path)
    assert not result.passed and result.score < 0.5, f"the starter scores {result.score:.0%}"
    for item in result.checks:
        if not item.passed:
            assert item.reason and item.hint, f"{item.id} fails without a reason or hint"
            assert "Traceback" not in item.reason


@pytest.mark.parametrize(("lab", "mutant"), MUTANTS, ids=[f"{lab.number}-{m['name']}" for lab, m in MUTANTS])
def test_each_broken_variant_is_caught(lab: Lab, mutant: dict[str, Any], platform: Platform, tmp_path: Path) -> None:
    result = grade_copy(lab, platform, ROOT / "solutions" / lab.name, tmp_path, mutant)
    assert mutant["caught_by"] in {c.id for c in result.checks}, f"no check named {mutant['caught_by']}"
    assert mutant["caught_by"] in failed(result), (
        f"mutant {mutant['name']} was not caught by {mutant['caught_by']}; failed: {failed(result)}"
    )
