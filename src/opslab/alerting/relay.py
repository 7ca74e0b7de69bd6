"""The alert relay: Kafka topic `alerts` to a webhook receiver that speaks Alertmanager's format.

The bridge puts every alert (firing and resolved) on the topic; the relay hands them to a receiver
such as lab 5's automation API, one alert per webhook notification (version 4). It is a consumer
with lab 4's discipline: no auto-commit, and an event's offset is committed only once the receiver
accepted it (2xx). A receiver that is down or answers 5xx, 408 or 429 holds the partition: the
same event is posted again with backoff, so nothing is skipped and the order of firing and
resolved is kept. A 4xx that retrying cannot change is logged and the event is passed over.

A crash between the post and the commit posts that alert again: the receiver must be idempotent,
as lab 5's API is (one job per fingerprint and startsAt), so the effect happens once.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from opslab.alerting.bridge import TOPIC

log = logging.getLogger("opslab.alerting.relay")

RETRYABLE = {408, 429}
"""4xx answers that are worth sending again (the receiver was busy, not the alert wrong)."""
BACKOFF_MAX = 5.0


def notification(event: Mapping[str, Any]) -> dict[str, Any]:
    """The Alertmanager webhook notification (version 4) for one event of the `alerts` topic."""
    labels = dict(event.get("labels") or {})
    labels.setdefault("alertname", str(event.get("alertname", "")))
    annotations = dict(event.get("annotations") or {})
    status = str(event.get("status") or "firing")
    fingerprint = str(event.get("fingerprint") or "")
    alert = {
        "status": status,
        "labels": labels,
        "annotations": annotations,
        "startsAt": event.get("startsAt"),
        "endsAt": event.get("endsAt") or "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": fingerprint,
    }
    return {
        "version": "4",
        "groupKey": f"relay:{fingerprint}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": str(event.get("receiver") or "relay"),
        "groupLabels": {"alertname": labels["alertname"]},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "",
        "alerts": [alert],
    }


@dataclass
class Counts:
    forwarded: int = 0
    refused: int = 0
    skipped: int = 0
    """Events for alerts the relay was told to leave out (say, Watchdog)."""
    retries: int = 0
    alerts: list[dict[str, Any]] = field(default_factory=list)
    """The events forwarded, newest last."""


class Relay:
    """Forward the `alerts` topic to ``url`` (with a bearer ``token``) from the moment it starts.

    The consumer group is the relay's own and starts at the end of the topic: alerts that fired
    before it started are not replayed. ``skip`` names alerts never forwarded.
    """

    def __init__(
        self,
        bootstrap: str,
        url: str,
        token: str,
        *,
        group: str,
        topic: str = TOPIC,
        skip: Collection[str] = ("Watchdog",),
    ) -> None:
        self.url, self.topic, self.skip = url, topic, frozenset(skip)
        self.headers = {"Authorization": f"Bearer {token}"}
        self.counts = Counts()
        self._stop = threading.Event()
        self._assigned = threading.Event()
        self._thread: threading.Thread | None = None
        quiet = logging.getLogger("opslab.alerting.relay.kafka")
        quiet.propagate = False
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
            "auto.offset.reset": "latest", "session.timeout.ms": 10000, "logger": quiet,
        })  # fmt: skip

    def start(self, ready_within: float = 30.0) -> Relay:
        """Join the group and wait until the relay owns the topic's partitions, at their ends."""
        self.consumer.subscribe([self.topic], on_assign=self._on_assign)
        self._thread = threading.Thread(target=self._run, name="alert-relay", daemon=True)
        self._thread.start()
        if not self._assigned.wait(ready_within):
            self.stop()
            raise RuntimeError(f"the alert relay was not assigned topic {self.topic!r} within {ready_within:.0f} s")
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)
        else:
            self.consumer.close()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Begin at the end: what fired before the relay started is history, not a page. The end is
        # read now, as an offset: OFFSET_END would be looked up later, after `start` returned, and
        # could skip an alert published in between.
        ends = []
        for tp in partitions:
            _, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)
            ends.append(TopicPartition(tp.topic, tp.partition, high))
        consumer.assign(ends)
        self._assigned.set()

    def _run(self) -> None:
        with httpx.Client(timeout=5.0) as http:
            try:
                while not self._stop.is_set():
                    message = self.consumer.poll(0.5)
                    if message is None:
                        continue
                    error = message.error()
                    if error is not None:
                        if error.code() != KafkaError._PARTITION_EOF:
                            log.warning("alert relay: %s", error)
                        continue
                    if self._deliver(http, message):
                        self.consumer.commit(message=message, asynchronous=False)
            finally:
                self.consumer.close()

    def _deliver(self, http: httpx.Client, message: Message) -> bool:
        """Post one event until the receiver takes it (True) or the relay is stopped (False)."""
        try:
            event = json.loads(message.value() or b"")
            if not isinstance(event, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            log.warning("alert relay: passing over a malformed event at offset %s: %s", message.offset(), exc)
            self.counts.refused += 1
            return True
        if str(event.get("alertname") or (event.get("labels") or {}).get("alertname")) in self.skip:
            self.counts.skipped += 1
            return True
        body, delay = notification(event), 0.25
        while not self._stop.is_set():
            try:
                answer = http.post(self.url, json=body, headers=self.headers)
            except httpx.HTTPError as exc:
                log.warning("alert relay: %s did not answer (%s); trying again", self.url, exc)
            else:
                if answer.is_success:
                    self.counts.forwarded += 1
                    self.counts.alerts.append(event)
                    return True
                if 400 <= answer.status_code < 500 and answer.status_code not in RETRYABLE:
                    log.warning("alert relay: %s refused %s (%s): %s", self.url, event.get("alertname"),
                                answer.status_code, answer.text[:200])  # fmt: skip
                    self.counts.refused += 1
                    return True
            self.counts.retries += 1
            self._stop.wait(delay)
            delay = min(delay * 2, BACKOFF_MAX)
        return False
