"""Lab 2's Go track shares the kopf track's API and checks (tests/labs/test_graders.py grades its
solution, starter and mutants); a learner's build error is one line, not a compiler dump."""

from __future__ import annotations

from pathlib import Path

import pytest

from opslab.grading.labs import find_lab
from opslab.runtime.lifecycle import Platform
from tests.labs.support import ROOT, Mutant, grade_copy

LAB = find_lab(ROOT, 2)
SOLUTION = ROOT / "solutions" / LAB.name / "go"
STARTER = LAB.starter / "go"
BUILD_ERROR = Mutant(
    name="build-error",
    file="main.go",
    find="\tflag.Parse()\n",
    replace="\tflag.Parse()\n\tundefinedHelper()\n",
    caught_by="test_an_app_gets_its_deployment_service_and_budget",
)


def test_the_starter_and_the_solution_share_the_api_and_the_module_sums() -> None:
    """A learner can write the solution's code without `go mod tidy` and with the given types."""
    for name in ("api.go", "go.sum"):
        assert (STARTER / name).read_text() == (SOLUTION / name).read_text(), f"{name} differs"
    for directory in (STARTER, SOLUTION):
        assert (directory / "crd.yaml").resolve() == (directory.parent / "crd.yaml").resolve()


@pytest.mark.platform
@pytest.mark.slow
def test_a_go_build_error_is_a_one_line_reason(platform: Platform, tmp_path: Path) -> None:
    result = grade_copy(LAB, platform, STARTER, tmp_path, BUILD_ERROR)
    check = next(c for c in result.checks if c.id == BUILD_ERROR.caught_by)
    reason = check.reason
    assert not check.passed and reason.startswith("your Go operator does not build: ./main.go:"), reason
    assert "undefinedHelper" in reason and "go build" in reason and "\n" not in reason
