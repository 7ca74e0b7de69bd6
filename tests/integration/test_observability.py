"""Prometheus scrapes every platform target, evaluates rules, and alerts reach Alertmanager."""

from __future__ import annotations

import json
import ssl
import time
import uuid
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Consumer
from prometheus_client import CollectorRegistry, Gauge, delete_from_gateway, push_to_gateway

from opslab.primitives.readiness import ProbeResult, wait_until
from opslab.runtime.lifecycle import Platform

pytestmark = pytest.mark.platform

EXPECTED_JOBS = {
    "prometheus", "alertmanager", "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok",
    "shop", "alert-bridge", "drift-detector", "pushgateway", "gitops",
    "thanos-sidecar", "thanos-store", "thanos-query", "thanos-compact",
}  # fmt: skip


def prom(platform: Platform) -> str:
    return f"http://127.0.0.1:{platform.settings.ports.prometheus}"


GRADING_JOBS = {"labs"}
"""Scrape jobs a lab grading adds while it runs (opslab.runtime.run_config): they come and go."""


def test_every_scrape_target_is_up(platform: Platform) -> None:
    def targets() -> dict[str, str]:
        found = httpx.get(f"{prom(platform)}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        return {t["labels"]["job"]: t["health"] for t in found if t["labels"]["job"] not in GRADING_JOBS}

    assert set(targets()) == EXPECTED_JOBS

    # On a machine busy grading, one scrape can time out: each target must be up within two rounds.
    def all_up() -> ProbeResult:
        down = {job: health for job, health in targets().items() if health != "up"}
        return ProbeResult.failed(f"not up: {down}") if down else ProbeResult.passed()

    wait_until(all_up, what="every scrape target up", timeout=45)


def test_recording_rules_are_evaluated(platform: Platform) -> None:
    def recorded() -> ProbeResult:
        result = httpx.get(
            f"{prom(platform)}/api/v1/query", params={"query": "opslab:scrape_targets_up:count"}, timeout=5
        ).json()["data"]["result"]
        value = float(result[0]["value"][1]) if result else 0
        return ProbeResult(value == len(EXPECTED_JOBS), f"value {value}")

    wait_until(recorded, what="recording rule", timeout=30)
    groups = httpx.get(f"{prom(platform)}/api/v1/rules", timeout=5).json()["data"]["groups"]
    health = {rule["name"]: rule["health"] for group in groups for rule in group["rules"]}
    assert health["opslab:apiserver_requests:rate5m"] == "ok"


def test_a_pushed_result_reaches_prometheus_with_its_own_job(platform: Platform) -> None:
    """What a batch job pushes is scraped from the Pushgateway with the job's labels, not the gateway's."""
    gateway = f"127.0.0.1:{platform.settings.ports.pushgateway}"
    job = f"t-push-{uuid.uuid4().hex[:8]}"
    registry = CollectorRegistry()
    Gauge("opslab_test_pushed_value", "a value a test job pushed", registry=registry).set(42)
    push_to_gateway(gateway, job=job, registry=registry, grouping_key={"workspace": "dev"})
    try:

        def scraped() -> ProbeResult:
            query = f'opslab_test_pushed_value{{job="{job}",workspace="dev"}}'
            found = httpx.get(f"{prom(platform)}/api/v1/query", params={"query": query}, timeout=5).json()
            rows = found["data"]["result"]
            return ProbeResult(bool(rows) and float(rows[0]["value"][1]) == 42, f"{rows}")

        wait_until(scraped, what="the pushed value in Prometheus", timeout=45)
        admin = httpx.put(f"http://{gateway}/api/v1/admin/wipe", timeout=5)
        assert admin.status_code in {403, 404, 405}, f"the Pushgateway's admin API answered {admin.status_code}"
        quit_ = httpx.post(f"http://{gateway}/-/quit", timeout=5)
        assert quit_.status_code in {403, 404, 405}, f"the Pushgateway's lifecycle API answered {quit_.status_code}"
    finally:
        delete_from_gateway(gateway, job=job, grouping_key={"workspace": "dev"})


def test_an_alert_reaches_alertmanager(platform: Platform) -> None:
    am = f"http://127.0.0.1:{platform.settings.ports.alertmanager}"

    def delivered() -> ProbeResult:
        alerts = httpx.get(f"{am}/api/v2/alerts", params={"filter": 'alertname="Watchdog"'}, timeout=5).json()
        return ProbeResult(bool(alerts), f"{len(alerts)} Watchdog alerts in Alertmanager")

    wait_until(delivered, what="Watchdog in Alertmanager", timeout=60)


def test_the_apiserver_requires_credentials(platform: Platform) -> None:
    response = httpx.get(
        f"https://127.0.0.1:{platform.settings.ports.apiserver}/api/v1/namespaces",
        verify=ssl.create_default_context(cafile=str(platform.ctx.pki.ca_cert)),
        timeout=5,
    )
    assert response.status_code == 401, "anonymous access is disabled"


def test_alerts_are_published_to_kafka(platform: Platform) -> None:
    """Alertmanager -> alert bridge -> Kafka topic alerts: the Watchdog event arrives."""
    consumer = Consumer(
        {
            "bootstrap.servers": f"127.0.0.1:{platform.settings.ports.kafka}",
            "group.id": f"test-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe(["alerts"])
    seen = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            event = json.loads(message.value())
            seen.append(event["alertname"])
            if event["alertname"] == "Watchdog":
                assert event["status"] == "firing"
                assert event["labels"]["severity"] == "none"
                assert event["fingerprint"]
                return
    finally:
        consumer.close()
    raise AssertionError(f"no Watchdog event on topic alerts (saw {seen})")


def test_a_grading_runs_route_is_loaded_into_alertmanager_and_removed(platform: Platform, tmp_path: Path) -> None:
    """run_config adds a run's webhook route by reload (Alertmanager accepts it) and removes it again.

    The name is not a grading run's id, so gradings running meanwhile never sweep it as stale."""
    from opslab.runtime import run_config  # noqa: PLC0415

    settings = platform.settings
    token = tmp_path / "token"
    token.write_text("secret\n")
    token.chmod(0o600)
    am = f"http://127.0.0.1:{settings.ports.alertmanager}/api/v2/status"

    def loaded() -> str:
        return str(httpx.get(am, timeout=5).json()["config"]["original"])

    run_config.add_webhook_route(settings, "selftest", "http://127.0.0.1:1/alerts", token)
    try:
        config = loaded()
        assert "grading-selftest" in config and str(token) in config, "the run's route is not in the live config"
    finally:
        gone = run_config.remove(settings, {"selftest"})
    assert gone == [f"{run_config.ALERT_ROUTES}/grading-selftest.yml"]
    assert "grading-selftest" not in loaded(), "the run's route stayed in Alertmanager after remove"
