"""Scenario files: the catalog validates, and a wrong field is named with its file."""

import dataclasses
from pathlib import Path

import pytest
import yaml

from opslab import settings as settings_module
from opslab.primitives.errors import PlatformNotRunning
from opslab.scenarios.model import SHAPES, ScenarioInvalid, catalog, find, load_scenario
from opslab.scenarios.observe import Observation, Sample, SeenAlert
from opslab.scenarios.runner import run_scenario, summarise
from opslab.settings import Ports
from opslab.shop.faults import FaultType

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"


def test_the_catalog_has_twelve_distinct_failures_and_a_control() -> None:
    scenarios = catalog(SCENARIOS)
    controls = [s for s in scenarios if s.control]
    faults = [s for s in scenarios if not s.control]
    assert len(controls) == 1
    assert len(faults) >= 12
    kinds = {(s.fault["type"], s.fault.get("target") or s.fault.get("node")) for s in faults}  # type: ignore[index]
    assert len(kinds) == len(faults), "each scenario is a distinct failure"
    assert all(s.expectation and s.expectation.alert for s in faults)
    assert {s.load.shape for s in scenarios} <= set(SHAPES)


def test_every_fault_type_is_exercised_by_a_scenario() -> None:
    used = {s.fault["type"] for s in catalog(SCENARIOS) if s.fault}
    assert {t.value for t in FaultType} <= used


def test_expected_alerts_exist_in_the_rules() -> None:
    rules = {
        rule["alert"]
        for path in (ROOT / "platform" / "prometheus" / "rules").glob("*.yml")
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    for scenario in catalog(SCENARIOS):
        if scenario.expectation:
            assert scenario.expectation.alert in rules, f"{scenario.name} expects an alert no rule defines"


def mutate(tmp_path: Path, name: str, change) -> Path:  # type: ignore[no-untyped-def]
    experiment = yaml.safe_load((SCENARIOS / f"{name}.yaml").read_text())
    change(experiment)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(experiment))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e: e["extensions"][0]["load"].update(shape="spiky"), r"load.shape 'spiky' is not one of steady"),
        (lambda e: e["extensions"][0].update(recovery=60), r"extensions\[opslab\] has unknown field 'recovery'"),
        (lambda e: e["extensions"][0].update(answer=""), r"answer .* is missing"),
        (
            lambda e: e["method"][0]["provider"]["arguments"].update(target="db"),
            r"spec.target 'db' is not a shop service",
        ),
        (lambda e: e.update(rollbacks=[]), "rollbacks are missing"),
        (lambda e: e["method"].pop(1), "no wait_for_alert probe"),
        (lambda e: e.pop("title"), "title"),
    ],
)
def test_a_wrong_field_is_named_with_its_file(tmp_path: Path, change, message: str) -> None:  # type: ignore[no-untyped-def]
    path = mutate(tmp_path, "payments-latency", change)
    with pytest.raises(ScenarioInvalid, match=message) as error:
        load_scenario(path)
    assert str(path) in str(error.value)


def test_an_unknown_scenario_names_the_known_ones() -> None:
    with pytest.raises(ScenarioInvalid, match="unknown scenario 'meteor'; known scenarios: cart-memory-leak"):
        find(SCENARIOS, "meteor")


def test_a_run_against_a_stopped_platform_says_to_start_it(tmp_path: Path) -> None:
    base = settings_module.load(environ={}, root=ROOT)
    unused = Ports(**{name: 64000 + i for i, (name, _) in enumerate(base.ports.items())})
    settings = dataclasses.replace(base, ports=unused)
    with pytest.raises(PlatformNotRunning, match=r"does not answer .* start it with `make up`"):
        run_scenario(find(SCENARIOS, "payments-latency"), settings, runs_root=tmp_path)
    assert not list(tmp_path.iterdir()), "nothing is written when the platform is down"


def test_the_summary_reads_the_lagging_impact_and_the_probe_sees_the_first_alert() -> None:
    """The SLIs are windowed rates: their peak comes after the fault window, before recovery."""
    scenario = find(SCENARIOS, "payments-latency")
    t0 = 1000.0
    observation = Observation(started=t0 - 10, first_sample=t0 - 10)
    observation.samples += [
        Sample(t0 + 5, "gateway", {"slow_ratio": 0.05}),
        Sample(t0 + 30, "gateway", {"slow_ratio": 0.39}),  # after the rollback at t0 + 20
        Sample(t0 + 60, "gateway", {"slow_ratio": 0.0}),
    ]
    alert = SeenAlert("ShopLatencyBudgetBurnSlow", {}, first_seen=t0 + 13, last_seen=t0 + 40)
    observation.alerts[alert.key] = alert
    journal = {
        "status": "completed",
        "run": [{"activity": {"provider": {"func": "wait_for_alert"}}, "status": "succeeded",
                 "output": {"seconds": 10.0}}],
    }  # fmt: skip
    summary = summarise(
        scenario, run_id="r", journal=journal, observation=observation, window=[t0, t0 + 20], recovery=25.0,
        leftovers=[],
    )  # fmt: skip
    assert summary.peak_slow_ratio == 0.39
    assert (summary.first_alert, summary.first_alert_seconds) == ("ShopLatencyBudgetBurnFast", 10.0)
