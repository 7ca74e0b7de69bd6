"""Lab 2's Go track passes the same checks as the kopf one: the controller-runtime reference
solution scores full marks, the untouched Go starter fails, a build error is a one-line reason, and
every broken variant in solutions/02-operator/go/mutants.yaml is caught by the check meant for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from opslab.grading.labs import find_lab
from opslab.runtime.lifecycle import Platform
from tests.labs.support import ROOT, failed, grade_copy

LAB = find_lab(ROOT, 2)
SOLUTION = ROOT / "solutions" / LAB.name / "go"
STARTER = LAB.starter / "go"
MUTANTS: list[dict[str, Any]] = list(yaml.safe_load((SOLUTION / "mutants.yaml").read_text()))
BUILD_ERROR = {
    "name": "build-error",
    "file": "main.go",
    "find": "\tflag.Parse()\n",
    "replace": "\tflag.Parse()\n\tundefinedHelper()\n",
    "caught_by": "test_an_app_gets_its_deployment_service_and_budget",
}


def test_the_starter_and_the_solution_share_the_api_and_the_module_sums() -> None:
    """A learner can write the solution's code without `go mod tidy` and with the given types."""
    for name in ("api.go", "go.sum"):
        assert (STARTER / name).read_text() == (SOLUTION / name).read_text(), f"{name} differs"
    for directory in (STARTER, SOLUTION):
        assert (directory / "crd.yaml").resolve() == (directory.parent / "crd.yaml").resolve()


@pytest.mark.platform
@pytest.mark.slow
def test_the_go_solution_scores_full_marks(platform: Platform, tmp_path: Path) -> None:
    result = grade_copy(LAB, platform, SOLUTION, tmp_path)
    assert not result.problem, result.problem
    assert len(result.checks) >= 8
    assert result.earned == result.total, failed(result)
    assert result.passed


@pytest.mark.platform
@pytest.mark.slow
def test_the_untouched_go_starter_fails_with_reasons_and_hints(platform: Platform, tmp_path: Path) -> None:
    result = grade_copy(LAB, platform, STARTER, tmp_path)
    assert not result.problem, result.problem
    assert not result.passed and result.score < 0.5, f"the Go starter scores {result.score:.0%}"
    for item in result.checks:
        if not item.passed:
            assert item.reason and item.hint, f"{item.id} fails without a reason or hint"
            assert "Traceback" not in item.reason


@pytest.mark.platform
@pytest.mark.slow
def test_a_go_build_error_is_a_one_line_reason(platform: Platform, tmp_path: Path) -> None:
    result = grade_copy(LAB, platform, STARTER, tmp_path, BUILD_ERROR)
    reason = failed(result).get(BUILD_ERROR["caught_by"], "")
    assert reason.startswith("your Go operator does not build: ./main.go:"), reason
    assert "undefinedHelper" in reason and "go build" in reason and "\n" not in reason


@pytest.mark.platform
@pytest.mark.slow
@pytest.mark.parametrize("mutant", MUTANTS, ids=[f"go-{m['name']}" for m in MUTANTS])
def test_each_broken_go_variant_is_caught(mutant: dict[str, Any], platform: Platform, tmp_path: Path) -> None:
    result = grade_copy(LAB, platform, SOLUTION, tmp_path, mutant)
    assert mutant["caught_by"] in {c.id for c in result.checks}, f"no check named {mutant['caught_by']}"
    assert mutant["caught_by"] in failed(result), (
        f"mutant {mutant['name']} was not caught by {mutant['caught_by']}; failed: {failed(result)}"
    )
