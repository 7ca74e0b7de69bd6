"""The notebooks are stored without outputs, and the ones that need no platform run headless
(nbclient) and pass their own checks. The one that reads an incident run is run against a real
one in tests/integration/test_notebooks.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from nbclient.exceptions import CellExecutionError

from tests.notebooks import NOTEBOOKS, execute, outputs_left, printed

ALL = sorted(NOTEBOOKS.glob("*.ipynb"))


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_a_notebook_is_stored_without_outputs(path: Path) -> None:
    left = outputs_left(path)
    assert not left, f"{path.name} has outputs in cells {left}: run `python -m tests.notebooks strip {path}`"


def test_the_slo_notebook_runs_and_reads_the_platforms_own_rules() -> None:
    text = printed(execute(NOTEBOOKS / "slo-burn-rates.ipynb"))
    assert "objective 99.5%: 216 minutes of outage a month" in text
    assert "ShopAvailabilityBudgetBurnFast     fires after 2% of the budget went" in text
    assert "stops 16 s after the sharp incident with both windows, 192 s with the long one alone" in text


def test_a_notebook_whose_check_fails_fails_the_run(tmp_path: Path) -> None:
    """The notebooks' own assertions count: a run with no incident to read fails, and says why."""
    with pytest.raises(CellExecutionError, match="no incident run"):
        execute(NOTEBOOKS / "incident-analysis.ipynb", env={"OPSLAB_RUN_DIR": str(tmp_path / "none")})
