"""Every scenario, both ways: the steady state holds before; after injection the documented
alert fires within its stated time; after the rollback the SLIs recover and nothing stays
injected. The control scenario runs first and must fire nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client

from opslab.grading.isolation import RUN_LABEL
from opslab.runtime.lifecycle import Platform
from opslab.scenarios.model import Scenario, catalog
from opslab.scenarios.runner import run_scenario

pytestmark = [pytest.mark.platform, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted(catalog(ROOT / "scenarios"), key=lambda s: (not s.control, s.name))


STOPS_A_COMPONENT = {"kafka-down", "redis-down"}
"""Fault types that stop a platform process every lab grading shares."""


def _param(scenario: Scenario) -> object:
    """Scenarios that stop Kafka or Redis run before the lab gradings start (tests/conftest.py),
    and so does the control scenario, which must come first."""
    early = scenario.control or (scenario.fault is not None and scenario.fault.get("type") in STOPS_A_COMPONENT)
    return pytest.param(scenario, id=scenario.name, marks=[pytest.mark.before_gradings] if early else [])


@pytest.mark.parametrize("scenario", [_param(s) for s in SCENARIOS])
def test_scenario(
    scenario: Scenario, platform: Platform, api: client.ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> None:
    summary = run_scenario(scenario, platform.settings, runs_root=tmp_path_factory.mktemp("runs"))
    report = Path(summary.report)
    assert (
        report.is_file() and (report.parent / "timeline.csv").is_file() and (report.parent / "journal.json").is_file()
    )
    if scenario.control:
        assert summary.false_positives == [], f"the control scenario fired {summary.false_positives}"
    else:
        assert summary.alert_seconds is not None, f"{summary.verdict} (see {report})"
    assert summary.recovered, f"{summary.verdict} (see {report})"
    assert summary.passed, summary.verdict
    faults = client.CustomObjectsApi(api).list_namespaced_custom_object("opslab.dev", "v1alpha1", "shop", "faults")
    # Lab gradings running at the same time keep faults of their own (scoped to their ledgers).
    left = [f["metadata"]["name"] for f in faults["items"] if RUN_LABEL not in (f["metadata"].get("labels") or {})]
    assert left == [], f"nothing stays injected, but {left} did"
