"""Lab 3 grader: runs the learner's exporter against the platform's Kafka, and loads their rules
and a scrape target into the platform's Prometheus."""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from support import Exporter, bootstrap, start_exporter

from opslab.grading.fixtures import LearnerError, learner_file

pytest_plugins = ["opslab.grading.fixtures"]


@pytest.fixture(scope="session")
def exporter(lab_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exporter]:
    running = start_exporter(lab_path, bootstrap(), tmp_path_factory.mktemp("exporter") / "exporter.log")
    yield running
    running.stop()


@pytest.fixture(scope="session")
def ground_truth() -> dict[str, object]:
    """A fresh topic (2 partitions) with a consumer group that committed part of it; true offsets."""
    kafka = bootstrap()
    suffix = uuid.uuid4().hex[:6]
    topic, group = f"lab3-{suffix}", f"lab3-group-{suffix}"
    admin = AdminClient({"bootstrap.servers": kafka})
    for future in admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)]).values():
        future.result(30)
    producer = Producer({"bootstrap.servers": kafka})
    for i in range(17):
        producer.produce(topic, f"m{i}".encode(), partition=0)
    for i in range(9):
        producer.produce(topic, f"n{i}".encode(), partition=1)
    producer.flush(15)
    consumer = Consumer({"bootstrap.servers": kafka, "group.id": group, "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(topic, 0, 5), TopicPartition(topic, 1, 9)], asynchronous=False)
    consumer.close()
    return {"topic": topic, "group": group, "end": {0: 17, 1: 9}, "committed": {0: 5, 1: 9}, "lag": {0: 12, 1: 0}}


@pytest.fixture(scope="session")
def prometheus() -> str:
    return os.environ.get("OPSLAB_PROMETHEUS_URL", "")


@pytest.fixture(scope="session")
def loaded(exporter: Exporter, lab_path: Path, prometheus: str) -> Iterator[str]:
    """The learner's rules and their exporter, loaded into the platform's Prometheus (job "labs")."""
    state = Path(os.environ.get("OPSLAB_STATE_DIR", ""))
    rules_dir, targets_dir = state / "config" / "lab-rules", state / "config" / "lab-targets"
    if not rules_dir.is_dir() or not targets_dir.is_dir():
        pytest.fail("the platform's Prometheus has no lab directories: restart it with `make up`")
    name = f"lab3-{uuid.uuid4().hex[:6]}"
    rules = rules_dir / f"{name}.yml"
    target = targets_dir / f"{name}.json"
    rules.write_text(learner_file(lab_path, "rules.yml").read_text())
    target.write_text(
        json.dumps([{"targets": [f"127.0.0.1:{exporter.port}"], "labels": {"lab": "03", "grading": name}}])
    )
    try:
        reload = httpx.post(f"{prometheus}/-/reload", timeout=30)
        if reload.status_code != 200:
            raise LearnerError(f"Prometheus refused rules.yml: {reload.text.strip()[:300]}")
        yield name
    finally:
        rules.unlink(missing_ok=True)
        target.unlink(missing_ok=True)
        httpx.post(f"{prometheus}/-/reload", timeout=30)


@pytest.fixture(scope="session")
def closed_port() -> int:
    """A port nothing listens on (Kafka "down" for the exporter)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
