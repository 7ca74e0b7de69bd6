"""The incident-analysis notebook, run headless against a real incident run of the session's
platform: the newest one the incident tests left, or a quiet one of its own when none has run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from opslab.incidents import engine
from opslab.runtime import history
from opslab.runtime.lifecycle import Platform
from tests.notebooks import NOTEBOOKS, execute, printed

pytestmark = [pytest.mark.platform]


def _incident_run(platform: Platform) -> Path:
    scored = [r for r in sorted(platform.settings.paths.runs.glob("*-incident")) if (r / "score.json").is_file()]
    if scored:
        return scored[-1]
    settings = platform.settings
    engine.start(settings, "inc-10", seed=1, time_limit=120, healthy_within=180, responder="notebook-test")
    outcome = engine.stop(settings, settle_wait=0)
    assert outcome is not None
    return outcome.run_dir


def test_the_incident_notebook_reads_a_real_incident_run(platform: Platform) -> None:
    run = _incident_run(platform)
    facts = json.loads((run / "run.json").read_text())
    text = printed(execute(NOTEBOOKS / "incident-analysis.ipynb", env={"OPSLAB_RUN_DIR": str(run)}))
    assert f"{facts['incident']} answered by {facts['responder']}" in text, text
    assert "s  stopped" in text and "of a month's error budget at this load" in text, text


def test_the_long_term_slo_notebook_agrees_with_the_history_thanos_holds(platform: Platform) -> None:
    """The month of history through the platform's querier: the notebook's own checks compare every
    budget and incident cost with the history's model; a querier that answered from part of the
    data (raw blocks alone) or not at all fails it."""
    settings = platform.settings
    env = {"OPSLAB_THANOS_URL": f"http://127.0.0.1:{settings.ports.thanos_query}",
           "OPSLAB_STATE_DIR": str(settings.paths.state)}  # fmt: skip
    text = printed(execute(NOTEBOOKS / "long-term-slo.ipynb", env=env))
    catalog = next(line for line in text.splitlines() if line.startswith("catalog "))
    left = f"{history.tally('catalog', *history.last_days(28)).budget_left():.1%}"
    assert catalog.endswith(f"{left}   {left}"), f"the querier's budget left is not the model's ({left}): {catalog}"
    assert "h-04     catalog" in text and "the worst week of all: payments, week 1" in text, text


def test_the_kafka_notebook_finds_littles_law_on_the_platforms_kafka(platform: Platform) -> None:
    """A queue of its own on the platform's Kafka: the lag Kafka reports (L) equals the arrival rate
    times each message's measured time in the system (λ W), within the notebook's own tolerance; a
    burst past capacity grows the lag; the shop's orders give a time in the queue."""
    settings = platform.settings
    env = {"OPSLAB_KAFKA_BOOTSTRAP": f"127.0.0.1:{settings.ports.kafka}",
           "OPSLAB_PROMETHEUS_URL": f"http://127.0.0.1:{settings.ports.prometheus}"}  # fmt: skip
    text = printed(execute(NOTEBOOKS / "kafka-lag-capacity.ipynb", env=env))
    assert "Little's law says it equals L" in text and "messages/s" in text, text
    assert "an order waits about" in text, f"the shop published no orders to read: {text[-500:]}"
    assert "deleted notebook-littles-law-" in text, text
