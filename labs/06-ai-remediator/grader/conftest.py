"""Lab 6 grader: the learner's policy/ (held-out plans, their own `opa test` tests) and agent.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import Case, learner_policy, load_cases

pytest_plugins = ["opslab.grading.fixtures"]


@pytest.fixture(scope="session")
def policy(lab_path: Path) -> tuple[list[Path], list[Path]]:
    """The learner's rule files and test files."""
    return learner_policy(lab_path)


@pytest.fixture(scope="session")
def heldout_plans() -> list[Case]:
    return load_cases()
