"""The loop's middle on the real Kafka, Redis and lab 5's reference backend: the relay forwards
what is new on the topic, leaves Watchdog out, passes over what it cannot read without holding the
partition up, commits what the backend took, and the backend turns a redelivered alert into one
job and escalates what no runbook fits (the page `opslab demo` waits for). Beside it, lab 4's
processor captures the shop's orders from where it started, once each."""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path

import httpx
import pytest
import redis
from confluent_kafka import ConsumerGroupTopicPartitions, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from opslab.agent import automation, loop
from opslab.bench.pipeline import order
from opslab.primitives.readiness import wait_for
from opslab.runtime import redis_auth
from opslab.runtime.lifecycle import Platform

pytestmark = pytest.mark.platform

ROOT = Path(__file__).resolve().parents[2]


def event(alertname: str, service: str, fingerprint: str, status: str = "firing") -> bytes:
    """An event as the alert bridge publishes it."""
    labels = {"alertname": alertname, "service": service, "severity": "page", "namespace": "shop"}
    return json.dumps({
        "fingerprint": fingerprint, "status": status, "alertname": alertname, "service": service,
        "severity": "page", "labels": labels, "annotations": {"summary": f"{service} burns its budget"},
        "startsAt": "2026-12-04T10:00:00Z", "endsAt": None, "receiver": "kafka-bridge", "receivedAt": 0,
    }).encode()  # fmt: skip


def test_an_alert_on_kafka_reaches_lab_5_once_and_pages_when_no_runbook_fits(
    platform: Platform, tmp_path: Path
) -> None:
    bootstrap = f"127.0.0.1:{platform.settings.ports.kafka}"
    topic = f"alerts-test-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)]).values():
        future.result(timeout=30)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    producer.produce(topic, event("ShopAvailabilityBudgetBurnFast", "catalog", "old"))  # before the relay: history
    assert producer.flush(15) == 0

    # No kubeconfig at all: escalating must not touch the cluster.
    with loop.running(platform.settings, tmp_path, tmp_path / "none", ROOT / automation.REFERENCE, topic) as healing:
        for value in (
            event("Watchdog", "", "dog"),
            b"{not json",
            event("ShopAvailabilityBudgetBurnFast", "gateway", "fp-1"),
            event("ShopAvailabilityBudgetBurnFast", "gateway", "fp-1"),  # redelivered
        ):
            producer.produce(topic, value)
        assert producer.flush(15) == 0
        seen: list[dict[str, object]] = []
        page = healing.wait_for_page(60, on_job=seen.append, interval=0.2)
        assert page is not None, f"no job was escalated; jobs seen: {seen}"
        assert page["alertname"] == "ShopAvailabilityBudgetBurnFast" and page["state"] == "escalated", page
        assert page["runbook"] == "escalate" and page["target"] == "shop/gateway", page
        assert wait_for(lambda: healing.relay.counts.forwarded == 2, 15), healing.relay.counts
        counts = healing.relay.counts
        assert (counts.skipped, counts.refused) == (1, 1), counts
        assert [a["service"] for a in counts.alerts] == ["gateway", "gateway"]  # the old one was not replayed
        jobs = healing.backend.jobs()
        assert len(jobs) == 1, f"a redelivered alert must make one job, not {len(jobs)}: {jobs}"
        group = f"opslab-{healing.backend.namespace}"
        redis_prefix = healing.backend.namespace

        def committed() -> list[int]:
            listed = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(15)
            return [tp.offset for tp in listed.topic_partitions if tp.topic == topic]

        assert wait_for(lambda: committed() == [5], 15), committed()  # all five taken, the old one before them

    groups = {g.group_id for g in admin.list_consumer_groups().result(15).valid}
    assert group not in groups, "the relay's consumer group outlived it"
    store = redis.Redis.from_url(redis_auth.url(platform.settings))
    assert list(store.scan_iter(match=f"{redis_prefix}:*")) == [], "the backend's keys outlived it"


def test_lab_4s_processor_captures_the_orders_published_after_it_started_once_each(
    platform: Platform, tmp_path: Path
) -> None:
    bootstrap, shop = f"127.0.0.1:{platform.settings.ports.kafka}", f"http://127.0.0.1:{platform.settings.ports.shop}"
    rng = random.Random(4)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    before = order(rng)
    producer.produce(loop.ORDERS, json.dumps(before).encode(), key=before["order_id"].encode())
    assert producer.flush(15) == 0
    pipeline = loop.OrdersPipeline(bootstrap, shop, ROOT / loop.PROCESSOR, tmp_path).start()
    try:
        sent = [order(rng) for _ in range(20)]
        for body in sent:
            producer.produce(loop.ORDERS, json.dumps(body).encode(), key=body["order_id"].encode())
        assert producer.flush(15) == 0
        figures = pipeline.settle(60)
        assert figures["running"], (tmp_path / "processor.log").read_text()[-2000:]
        assert figures["orders"] >= figures["published"] >= len(sent), figures
        assert figures["duplicated_orders"] == 0, figures
        captured = httpx.get(f"{shop}/fulfilment/ledger", headers={"X-Ledger": pipeline.ledger}, timeout=10).json()
        ids = {c["order_id"] for c in captured["captures"]}
        assert {b["order_id"] for b in sent} <= ids and before["order_id"] not in ids
    finally:
        pipeline.close()
    assert pipeline.proc is not None and pipeline.proc.returncode is not None
    assert pipeline.summary()["captures"] == 0, "the demo's ledger outlived it"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    assert f"opslab-{pipeline.ledger}" not in {g.group_id for g in admin.list_consumer_groups().result(15).valid}
