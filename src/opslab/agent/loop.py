"""The self-healing loop's middle: from an alert on Kafka to a page for the AI remediator, and
lab 4's order processor keeping the shop's orders flowing beside it.

    Alertmanager ─▶ alert bridge ─▶ Kafka `alerts` ─▶ relay ─▶ lab 5's API ─▶ Redis ─▶ lab 5's workers
                                                                                        │ a runbook fits: run it
                                                                                        └ none fits: escalated ─▶ page

`opslab demo` runs it around an incident: lab 5's automation backend (the reference, or a
learner's) handles what its runbooks cover, and a job it escalates pages lab 6's remediator. Lab 4's
processor captures the orders checkout publishes meanwhile (topic `orders`, from its end, into a
fulfilment ledger of its own), so the demo can say what the incident cost the order pipeline.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from opslab.agent.automation import Backend
from opslab.alerting.bridge import TOPIC
from opslab.alerting.relay import Relay
from opslab.primitives.ports import free_port
from opslab.primitives.processes import kill_group
from opslab.runtime.endpoints import endpoint_environment
from opslab.settings import Settings

ENDED = {"escalated", "failed", "dead"}
"""Job states that leave the alert to someone else: a human, or in the demo the AI remediator."""


@dataclass
class Loop:
    backend: Backend
    relay: Relay
    started: float = field(default_factory=time.time)
    states: dict[str, str] = field(default_factory=dict)
    """The last state seen of each job."""
    told: int = 0
    """Forwarded alerts already reported."""

    def forwarded(self) -> list[dict[str, Any]]:
        """Alert events the relay forwarded since the last call."""
        fresh = self.relay.counts.alerts[self.told :]
        self.told += len(fresh)
        return fresh

    def changes(self) -> list[dict[str, Any]]:
        """Jobs that are new or changed state since the last call, oldest first."""
        fresh = []
        for job in reversed(self.backend.jobs()):
            ident, state = str(job.get("id", "")), str(job.get("state", ""))
            if ident and self.states.get(ident) != state:
                self.states[ident] = state
                fresh.append(job)
        return fresh

    def wait_for_page(
        self,
        within: float,
        on_alert: Callable[[dict[str, Any]], None] = lambda _: None,
        on_job: Callable[[dict[str, Any]], None] = lambda _: None,
        interval: float = 1.0,
    ) -> dict[str, Any] | None:
        """The first job the backend gives up on (escalated, failed, dead), or None after ``within`` s;
        ``on_alert`` hears of each alert the relay forwards, ``on_job`` of every job as it appears and
        changes state."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for alert in self.forwarded():
                on_alert(alert)
            for job in self.changes():
                on_job(job)
                if job.get("state") in ENDED:
                    return job
            time.sleep(interval)
        return None


@contextlib.contextmanager
def running(settings: Settings, work: Path, kubeconfig: Path, code: Path, topic: str = TOPIC) -> Iterator[Loop]:
    """Lab 5's backend in ``code`` (its runbooks acting with ``kubeconfig``) and the relay feeding it
    from ``topic`` (`alerts`), from now on; both stopped, and the backend's Redis keys deleted, after."""
    env = {**endpoint_environment(settings), "KUBECONFIG": str(kubeconfig)}
    backend = Backend(env, work, code, namespace=f"demo-{secrets.token_hex(3)}")
    relay: Relay | None = None
    try:
        backend.api()
        backend.workers()
        relay = Relay(
            env["OPSLAB_KAFKA_BOOTSTRAP"],
            f"{backend.url}/alerts",
            backend.token,
            group=f"opslab-{backend.namespace}",
            topic=topic,
        ).start()
        yield Loop(backend, relay)
    finally:
        if relay is not None:
            relay.stop()
            forget_group(env["OPSLAB_KAFKA_BOOTSTRAP"], f"opslab-{backend.namespace}")
        backend.close()


PROCESSOR = Path("solutions") / "04-event-pipeline" / "processor.py"
"""Lab 4's reference processor, relative to the repository."""
ORDERS = "orders"


def ends(bootstrap: str, topic: str) -> dict[int, int]:
    """Each partition's end offset (high watermark) of ``topic``."""
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": f"opslab-probe-{secrets.token_hex(3)}"})
    try:
        partitions = probe.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
    finally:
        probe.close()


def commit_at(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Make ``group`` start at ``offsets`` (a new group would otherwise read the topic from its start)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
    finally:
        consumer.close()


@dataclass
class OrdersPipeline:
    """Lab 4's processor on the shop's `orders` from now on, capturing into ledger ``ledger``."""

    bootstrap: str
    shop: str
    processor: Path
    work: Path
    ledger: str = field(default_factory=lambda: f"demo-{secrets.token_hex(3)}")
    began: dict[int, int] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OrdersPipeline:
        group = f"opslab-{self.ledger}"
        self.began = ends(self.bootstrap, ORDERS)
        commit_at(self.bootstrap, group, ORDERS, self.began)
        args = [sys.executable, str(self.processor), "--bootstrap", self.bootstrap, "--topic", ORDERS, "--group", group,
                "--fulfilment", self.shop, "--ledger", self.ledger, "--metrics-port", str(free_port())]  # fmt: skip
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with (self.work / "processor.log").open("wb") as log:
            self.proc = subprocess.Popen(args, cwd=self.processor.parent, stdout=log, stderr=subprocess.STDOUT,
                                         env=env, start_new_session=True)  # fmt: skip
        return self

    def published(self) -> int:
        """Orders checkout published since the pipeline started."""
        now = ends(self.bootstrap, ORDERS)
        return sum(now[p] - self.began.get(p, 0) for p in now)

    def summary(self) -> dict[str, Any]:
        """The ledger's summary: captures, orders, duplicated orders (see the shop's fulfilment API)."""
        answer = httpx.get(f"{self.shop}/fulfilment/ledger/summary", headers={"X-Ledger": self.ledger}, timeout=10)
        answer.raise_for_status()
        return dict(answer.json())

    def settle(self, within: float = 30.0) -> dict[str, Any]:
        """Once every order published so far is captured (or ``within`` s passed): the figures."""
        published = self.published()
        deadline = time.monotonic() + within
        summary = self.summary()
        while summary["orders"] < published and time.monotonic() < deadline:
            time.sleep(1)
            summary = self.summary()
        running = self.proc is not None and self.proc.poll() is None
        return {"published": published, **summary, "running": running}

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            kill_group(self.proc.pid, signal.SIGTERM)  # it commits and leaves the group
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                kill_group(self.proc.pid)
                self.proc.wait()
        with contextlib.suppress(httpx.HTTPError):
            httpx.delete(f"{self.shop}/fulfilment/ledger", headers={"X-Ledger": self.ledger}, timeout=10)
        forget_group(self.bootstrap, f"opslab-{self.ledger}")


def forget_group(bootstrap: str, group: str) -> None:
    """Delete a consumer group the demo made (its members gone), so nothing of it stays in Kafka."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    with contextlib.suppress(KafkaException):
        for future in admin.delete_consumer_groups([group], request_timeout=10).values():
            future.result(15)
