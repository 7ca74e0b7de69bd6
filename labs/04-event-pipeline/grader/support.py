"""Helpers shared by lab 4's checks: the run's order streams, the fulfilment ledger, faults, and the
learner's processors.

Isolation: each check opens a ``Stream`` of its own: a topic ``grading-<run>-<key>-orders`` (the
learner's retry and dead-letter topics are ``<topic>.<anything>``, under the same prefix), a
consumer group of the same prefix, and a fulfilment ledger ``<run>-<key>`` that only this check
writes and reads. Faults are Fault objects scoped to that ledger (and, where a check needs it, to
some orders), so other runs and the shop's own traffic never see them. Everything is labelled with
the run id and removed afterwards (and by `opslab lab sweep` after a crash).
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import signal
import struct
import subprocess
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from botocore.exceptions import BotoCoreError, ClientError
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kubernetes import client
from kubernetes.client.rest import ApiException
from prometheus_client.parser import text_string_to_metric_families

from opslab.grading import isolation
from opslab.grading.fixtures import (
    LearnerError,
    learner_file,
    python,
    signal_learner,
    start_learner,
    stop_learner,
)  # fmt: skip
from opslab.grading.sandbox import Sandbox
from opslab.primitives.ports import free_port
from opslab.primitives.processes import kill_group
from opslab.primitives.readiness import wait_for
from opslab.runtime import sqs
from opslab.shop import contract
from opslab.shop.faults import GROUP, PLURAL, VERSION
from opslab.shop.topology import PRODUCTS

SHOP_NAMESPACE = "shop"
DLQ_HEADERS = ("error-class", "error-message", "attempts", "original-topic", "original-partition", "original-offset")
"""The headers every dead letter must carry (README, task 1)."""
_quiet = logging.getLogger("opslab.grading.lab04.kafka")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


# ---------------------------------------------------------------------- orders


def new_order_id(rng: random.Random) -> str:
    return f"ord-{rng.getrandbits(48):012x}"


def valid_order(rng: random.Random) -> dict[str, Any]:
    items = {sku: rng.randint(1, 3) for sku in rng.sample(PRODUCTS, rng.randint(1, 3))}
    return contract.new_order(new_order_id(rng), f"user-{rng.randint(1, 500)}", items, time.time())


def poison_order(rng: random.Random, index: int) -> tuple[str, bytes]:
    """An order the API refuses for good (a key, the raw value): three kinds, in turn."""
    order = valid_order(rng)
    kind = index % 3
    if kind == 0:
        return order["order_id"], json.dumps(order).encode()[:-7]  # cut off: not JSON
    if kind == 1:
        order["items"] = {"sku-999": 1}  # an unknown product
        return order["order_id"], json.dumps(order).encode()
    order["amount_cents"] += 1  # the amount does not match the items
    return order["order_id"], json.dumps(order).encode()


@dataclass
class Sent:
    order_id: str
    partition: int
    offset: int
    valid: bool
    value: bytes = b""
    """The bytes as published (a dead letter must keep them)."""


# ---------------------------------------------------------------------- the run's stream


@dataclass(kw_only=True)
class Ledgered(ABC):
    """One check's fulfilment ledger, its faults, and the orders it sent (whatever carried them)."""

    shop: str
    api: client.ApiClient
    run_id: str
    key: str
    sent: dict[str, Sent] = field(default_factory=dict)
    faults: list[str] = field(default_factory=list)
    other_ledgers: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.prefix = isolation.topic_prefix(self.run_id)
        self.ledger = f"{self.run_id}-{self.key}"
        self.rng = random.Random(f"{self.run_id}-{self.key}")
        self.http = httpx.Client(base_url=self.shop, headers={"X-Ledger": self.ledger}, timeout=10)

    def records(self, valid: int, poison: int, orders: list[dict[str, Any]] | None) -> list[tuple[str, bytes, bool]]:
        """(order id, bytes, valid) of the given orders, ``valid`` good and ``poison`` bad ones, shuffled."""
        records = [(o["order_id"], json.dumps(o).encode(), True) for o in orders or []]
        records += [
            (o["order_id"], json.dumps(o).encode(), True) for o in (valid_order(self.rng) for _ in range(valid))
        ]
        records += [(*poison_order(self.rng, i), False) for i in range(poison)]
        self.rng.shuffle(records)
        return records

    @abstractmethod
    def dead_letters(self) -> list[tuple[str, dict[str, str], bytes]]:
        """(order id, headers or fields, bytes) of every dead letter so far (Kafka or Redis)."""

    @property
    def valid_ids(self) -> set[str]:
        return {s.order_id for s in self.sent.values() if s.valid}

    @property
    def poison_ids(self) -> set[str]:
        return {s.order_id for s in self.sent.values() if not s.valid}

    # -------------------------------------------------------------- the ledger

    def summary(self) -> dict[str, Any]:
        answer = self.http.get("/fulfilment/ledger/summary")
        answer.raise_for_status()
        return dict(answer.json())

    def captures(self, ledger: str | None = None) -> list[dict[str, Any]]:
        """Every capture in the run's ledger (or in ``ledger``, another of this stream's), oldest first."""
        if ledger:
            self.other_ledgers.add(ledger)
        found: list[dict[str, Any]] = []
        after = 0
        while True:
            page = self.http.get("/fulfilment/ledger", params={"after": after, "limit": 10_000},
                                 headers={"X-Ledger": ledger or self.ledger}).json()  # fmt: skip
            found += page["captures"]
            if not page["more"]:
                return found
            after = page["next_after"]

    def captured(self) -> dict[str, int]:
        """How often each order was captured."""
        counts: dict[str, int] = {}
        for capture in self.captures():
            counts[capture["order_id"]] = counts.get(capture["order_id"], 0) + 1
        return counts

    def attempts(self, order: str | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": 200_000}
        if order:
            params["order"] = order
        return list(self.http.get("/fulfilment/ledger/attempts", params=params).json()["attempts"])

    def last_slow_capture_ended(self, slower_than: float) -> float:
        """When (wall clock) the latest capture that took at least ``slower_than`` seconds was
        answered, or 0.0 if none has yet."""
        ends = [float(a["at"]) + float(a["seconds"]) for a in self.attempts() if float(a["seconds"]) >= slower_than]
        return max(ends, default=0.0)

    def replays(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """Captures answered from an idempotency key (work done again that idempotency absorbed),
        each with the attempt of the same order before it."""
        last: dict[str, dict[str, Any]] = {}
        found = []
        for attempt in self.attempts():
            if attempt["status"] == 200 and attempt["order_id"] in last:
                found.append((last[attempt["order_id"]], attempt))
            last[attempt["order_id"]] = attempt
        return found

    # -------------------------------------------------------------- faults

    def fault(self, kind: str, **spec: Any) -> str:
        """A Fault on fulfilment for this stream's ledger only; removed by ``clear_faults``."""
        name = f"{self.ledger}-{kind}-{uuid.uuid4().hex[:5]}"
        body = {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "Fault",
            "metadata": {"name": name, "labels": isolation.labels(self.run_id)},
            "spec": {"type": kind, "target": "fulfilment", "ledger": self.ledger, **spec},
        }  # fmt: skip
        client.CustomObjectsApi(self.api).create_namespaced_custom_object(GROUP, VERSION, SHOP_NAMESPACE, PLURAL, body)
        self.faults.append(name)
        return name

    def clear_fault(self, name: str) -> None:
        with contextlib.suppress(ApiException):
            client.CustomObjectsApi(self.api).delete_namespaced_custom_object(
                GROUP, VERSION, SHOP_NAMESPACE, PLURAL, name
            )
        if name in self.faults:
            self.faults.remove(name)

    def close(self) -> None:
        for name in list(self.faults):
            self.clear_fault(name)
        for ledger in (self.ledger, *self.other_ledgers):
            with contextlib.suppress(httpx.HTTPError):
                self.http.delete("/fulfilment/ledger", headers={"X-Ledger": ledger})
        self.http.close()


@dataclass(kw_only=True)
class Stream(Ledgered):
    """One check's Kafka topic and consumer group, with its ledger and faults."""

    kafka: str
    partitions: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        self.topic = f"{self.prefix}{self.key}-orders"
        self.group = f"{self.prefix}{self.key}-processor"
        self.dlq = f"{self.topic}.dlq"
        self.admin = AdminClient({"bootstrap.servers": self.kafka, "logger": _quiet})
        futures = self.admin.create_topics([NewTopic(self.topic, num_partitions=self.partitions, replication_factor=1)])
        for future in futures.values():
            future.result(30)
        self.producer = Producer({"bootstrap.servers": self.kafka, "logger": _quiet, "linger.ms": 5,
                                  "enable.idempotence": True})  # fmt: skip

    # -------------------------------------------------------------- producing

    def produce(self, valid: int, poison: int = 0, *, orders: list[dict[str, Any]] | None = None) -> list[Sent]:
        """Publish ``valid`` good orders (or the given ones) and ``poison`` bad ones, shuffled; wait for the acks."""
        records = self.records(valid, poison, orders)
        sent: list[Sent] = []

        def delivered(error: KafkaError | None, message: Any, order_id: str, ok: bool) -> None:
            if error is None:
                sent.append(Sent(order_id, message.partition(), message.offset(), ok, message.value()))

        for order_id, value, ok in records:
            while True:
                try:
                    self.producer.produce(self.topic, value, key=order_id.encode(),
                                          on_delivery=lambda e, m, i=order_id, v=ok: delivered(e, m, i, v))  # fmt: skip
                    break
                except BufferError:
                    self.producer.poll(0.1)
        if self.producer.flush(60) != 0 or len(sent) != len(records):
            raise RuntimeError("Kafka did not take the grader's orders within 60 s")
        for record in sent:
            self.sent[record.order_id] = record
        return sent

    # -------------------------------------------------------------- Kafka

    def dead_letters(self) -> list[tuple[str, dict[str, str], bytes]]:
        """(key, headers, value) of every message on ``<topic>.dlq`` so far."""
        return [((m.key() or b"").decode(), {k: (v or b"").decode(errors="replace") for k, v in m.headers() or []},
                 m.value() or b"") for m in read_topic(self.kafka, self.dlq)]  # fmt: skip

    def ends(self) -> int:
        """Messages on the main topic so far (the sum of its partitions' end offsets)."""
        consumer = Consumer({"bootstrap.servers": self.kafka, "group.id": self.group, "logger": _quiet})
        try:
            return sum(
                consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)[1]
                for p in range(self.partitions)
            )
        finally:
            consumer.close()

    def committed(self) -> dict[int, int]:
        """The group's committed offset per partition of the main topic (-1: none)."""
        consumer = Consumer({"bootstrap.servers": self.kafka, "group.id": self.group, "logger": _quiet})
        try:
            parts = consumer.committed([TopicPartition(self.topic, p) for p in range(self.partitions)], timeout=10)
            return {tp.partition: tp.offset for tp in parts}
        finally:
            consumer.close()


@dataclass(kw_only=True)
class RedisStream(Ledgered):
    """One check's Redis stream, consumer group and dead-letter stream ``<stream>:dead``, with its
    ledger and faults. Entries carry the order's bytes in the field ``order``."""

    redis_url: str

    def __post_init__(self) -> None:
        super().__post_init__()
        self.stream = f"{self.prefix}{self.key}:orders"
        self.group = f"{self.prefix}{self.key}-workers"
        self.dead = f"{self.stream}:dead"
        self.redis = redis.Redis.from_url(self.redis_url, socket_timeout=10)
        self.order_of: dict[str, str] = {}
        """Entry id -> order id."""

    def produce(self, valid: int, poison: int = 0, *, orders: list[dict[str, Any]] | None = None) -> list[Sent]:
        sent = []
        pipe = self.redis.pipeline(transaction=False)
        records = self.records(valid, poison, orders)
        for _, value, _ in records:
            pipe.xadd(self.stream, {"order": value})
        for (order_id, value, ok), entry in zip(records, pipe.execute(), strict=True):
            self.order_of[entry.decode()] = order_id
            sent.append(Sent(order_id, 0, len(self.sent) + len(sent), ok, value))
        for record in sent:
            self.sent[record.order_id] = record
        return sent

    def pending(self) -> set[str]:
        """Entry ids delivered to a consumer of the group and not acknowledged."""
        found: set[str] = set()
        start = "-"
        while True:
            page = self.redis.xpending_range(self.stream, self.group, min=start, max="+", count=1000)
            found |= {p["message_id"].decode() for p in page}
            if len(page) < 1000:
                return found
            start = "(" + page[-1]["message_id"].decode()

    def delivered(self) -> set[str]:
        """Entry ids the group has handed out so far (up to its last-delivered id)."""
        groups = {g["name"].decode(): g for g in self.redis.xinfo_groups(self.stream)}
        group = groups.get(self.group)
        if group is None:
            return set()
        last = tuple(int(n) for n in group["last-delivered-id"].decode().split("-"))
        return {e for e in self.order_of if tuple(int(n) for n in e.split("-")) <= last}

    def acked_past_uncaptured(self) -> bool:
        """Is an entry acknowledged whose order was neither captured nor dead-lettered?"""
        with contextlib.suppress(redis.ResponseError):
            acked = self.delivered() - self.pending()
            if not acked:
                return False
            done = set(self.captured()) | {order for order, _, _ in self.dead_letters()}
            return any(self.order_of[e] in self.valid_ids and self.order_of[e] not in done for e in acked)
        return False

    def dead_letters(self) -> list[tuple[str, dict[str, str], bytes]]:
        """(order id, fields, order bytes) of every entry of ``<stream>:dead``; the order is found by
        the entry's ``original-id`` field ('?' when it has none)."""
        letters = []
        for _, fields in self.redis.xrange(self.dead):
            text = {k.decode(): v.decode(errors="replace") for k, v in fields.items()}
            letters.append((self.order_of.get(text.get("original-id", ""), "?"), text, fields.get(b"order", b"")))
        return letters

    def close(self) -> None:
        super().close()
        with contextlib.suppress(redis.RedisError):
            self.redis.delete(self.stream, self.dead)
        self.redis.close()


@dataclass(kw_only=True)
class SqsQueue(Ledgered):
    """One check's SQS queue ``<prefix><key>-orders`` and the learner's dead-letter queue
    ``<queue>-dlq``, with its ledger and faults. A message's body is the order's bytes."""

    sqs_url: str

    def __post_init__(self) -> None:
        super().__post_init__()
        self.queue = f"{self.prefix}{self.key}-orders"
        self.dlq = f"{self.queue}-dlq"
        self.sqs = sqs.client(self.sqs_url)
        self.queue_url = self.sqs.create_queue(QueueName=self.queue)["QueueUrl"]
        self.order_of_body: dict[bytes, str] = {}
        self.letters: list[tuple[str, dict[str, str], bytes]] = []
        """Every dead letter read from the DLQ so far (reading takes them off it)."""
        self.dlq_url: str | None = None
        """The learner's DLQ, once it exists."""

    def produce(self, valid: int, poison: int = 0, *, orders: list[dict[str, Any]] | None = None) -> list[Sent]:
        records = self.records(valid, poison, orders)
        for start in range(0, len(records), 10):  # a batch send takes at most 10
            chunk = records[start : start + 10]
            entries = [{"Id": str(i), "MessageBody": value.decode()} for i, (_, value, _) in enumerate(chunk)]
            if self.sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries).get("Failed"):
                raise RuntimeError(f"the queue {self.queue} refused some of the grader's orders")
        sent = [Sent(order_id, 0, len(self.sent) + i, ok, value) for i, (order_id, value, ok) in enumerate(records)]
        for record in sent:
            self.sent[record.order_id] = record
            self.order_of_body[record.value] = record.order_id
        return sent

    def counts(self) -> dict[str, int]:
        """Messages on the queue by state: visible, in flight (received, not deleted), delayed."""
        names = {"ApproximateNumberOfMessages": "visible", "ApproximateNumberOfMessagesNotVisible": "in flight",
                 "ApproximateNumberOfMessagesDelayed": "delayed"}  # fmt: skip
        found = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=list(names))["Attributes"]
        return {state: int(found.get(name, 0)) for name, state in names.items()}

    def in_queue(self) -> int:
        """Messages still on the queue, whatever their state."""
        return sum(self.counts().values())

    def redrive_policy(self) -> dict[str, Any] | None:
        found = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["RedrivePolicy"])["Attributes"]
        with contextlib.suppress(ValueError, KeyError):
            return dict(json.loads(found["RedrivePolicy"]))
        return None

    def deleted_past_uncaptured(self) -> bool:
        """Is a message gone from the queue whose order was neither captured nor dead-lettered?

        The queue is counted first: a message a correct worker deletes after that count was
        captured (or dead-lettered) before it, so it is found by the reads after it.
        """
        left = self.in_queue()
        return left + len(self.done_orders()) < len(self.sent)

    def held_uncaptured(self) -> int:
        """Orders neither captured nor dead-lettered whose messages are not waiting on the queue:
        a worker holds them (received, in flight). Waiting messages are counted first, so a message
        received meanwhile makes this an undercount, never an overcount."""
        counts = self.counts()
        waiting = counts["visible"] + counts["delayed"]
        return len(self.sent) - len(self.done_orders()) - waiting

    def done_orders(self) -> set[str]:
        """The orders sent that are captured or dead-lettered."""
        return (set(self.captured()) | {order for order, _, _ in self.dead_letters()}) & set(self.sent)

    def dead_letters(self) -> list[tuple[str, dict[str, str], bytes]]:
        """(order id, message attributes, body) of every dead letter so far. A message the queue
        moved by its RedrivePolicy (it has no error-class of its own) counts as retries-exhausted;
        '?' is the order id of a body that is no order the grader sent."""
        if self.dlq_url is None:
            try:
                self.dlq_url = str(self.sqs.get_queue_url(QueueName=self.dlq)["QueueUrl"])
            except self.sqs.exceptions.QueueDoesNotExist:
                return list(self.letters)
        while True:
            answer = self.sqs.receive_message(QueueUrl=self.dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=60,
                                              AttributeNames=["All"], MessageAttributeNames=["All"])  # fmt: skip
            messages = answer.get("Messages", [])
            if not messages:
                return list(self.letters)
            for message in messages:
                fields = {k: str(v.get("StringValue", "")) for k, v in message.get("MessageAttributes", {}).items()}
                if "error-class" not in fields and "DeadLetterQueueSourceArn" in message.get("Attributes", {}):
                    fields["error-class"] = "retries-exhausted"
                body = message["Body"].encode()
                self.letters.append((self.order_of_body.get(body, "?"), fields, body))
            self.sqs.delete_message_batch(QueueUrl=self.dlq_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ])  # fmt: skip

    def close(self) -> None:
        super().close()
        for name in (self.queue, self.dlq):
            with contextlib.suppress(BotoCoreError, ClientError):  # gone already, or down: the run's sweep retries
                self.sqs.delete_queue(QueueUrl=self.sqs.get_queue_url(QueueName=name)["QueueUrl"])


def read_topic(kafka: str, topic: str) -> list[Any]:
    """Every message of ``topic`` from the start to its current end (no group, nothing committed)."""
    consumer = Consumer({"bootstrap.servers": kafka, "group.id": f"grader-reader-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "logger": _quiet})  # fmt: skip
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return []
        ends = {}
        for partition in metadata.partitions:
            try:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            except KafkaException:
                continue  # just created, no leader yet: nothing to read there so far
            if high > low:
                ends[partition] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        found = []
        deadline = time.monotonic() + 30
        while ends and time.monotonic() < deadline:
            message = consumer.poll(1)
            if message is None or message.error():
                continue
            found.append(message)
            if message.offset() + 1 >= ends.get(message.partition(), 0):
                ends.pop(message.partition(), None)
        return found
    finally:
        consumer.close()


# ---------------------------------------------------------------------- Kafka's commit log

OFFSETS_TOPIC = "__consumer_offsets"


def java_string_hash(text: str) -> int:
    """Java's String.hashCode (UTF-16 code units, 32-bit overflow): how Kafka places a group."""
    units = text.encode("utf-16-be")
    value = 0
    for index in range(0, len(units), 2):
        value = (31 * value + int.from_bytes(units[index : index + 2], "big")) & 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def offset_commit_key(key: bytes) -> tuple[str, str, int] | None:
    """(group, topic, partition) of an OffsetCommit record's key in __consumer_offsets (key
    versions 0 and 1: int16 version, string group, string topic, int32 partition), else None."""
    try:
        (version,) = struct.unpack_from(">h", key, 0)
        if version not in (0, 1):
            return None
        position, fields = 2, []
        for _ in range(2):
            (length,) = struct.unpack_from(">h", key, position)
            fields.append(key[position + 2 : position + 2 + length].decode())
            position += 2 + length
        (partition,) = struct.unpack_from(">i", key, position)
    except (struct.error, UnicodeDecodeError):
        return None
    return fields[0], fields[1], partition


@dataclass
class CommitLog:
    """The offset commits a group makes from now on, read where Kafka keeps them: one record per
    committed partition in the group's partition of __consumer_offsets. Only commits that move a
    partition's offset count."""

    kafka: str
    group: str
    topic: str

    def __post_init__(self) -> None:
        self.reader = Consumer({"bootstrap.servers": self.kafka, "group.id": f"grader-commits-{uuid.uuid4().hex[:8]}",
                                "enable.auto.commit": False, "logger": _quiet})  # fmt: skip
        metadata = self.reader.list_topics(OFFSETS_TOPIC, timeout=10).topics[OFFSETS_TOPIC]
        hashed = java_string_hash(self.group)
        partition = 0 if hashed == -(1 << 31) else abs(hashed) % len(metadata.partitions)
        self.partition = TopicPartition(OFFSETS_TOPIC, partition)
        self.start = self.reader.get_watermark_offsets(self.partition, timeout=10)[1]

    def count(self) -> int:
        """Commit records of the group for the topic since this log was opened."""
        end = self.reader.get_watermark_offsets(self.partition, timeout=10)[1]
        self.reader.assign([TopicPartition(OFFSETS_TOPIC, self.partition.partition, self.start)])
        found, deadline = 0, time.monotonic() + 30
        last: dict[int, int] = {}
        try:
            while time.monotonic() < deadline:
                message = self.reader.poll(0.5)
                if message is None or message.error():
                    if self.reader.position([self.partition])[0].offset >= end:
                        return found
                    continue
                key = offset_commit_key(message.key() or b"")
                value = message.value()
                if key and key[:2] == (self.group, self.topic) and value and len(value) >= 10:
                    # The value starts with an int16 version and the int64 offset: a commit that
                    # repeats the offset before it costs the broker little and is not counted.
                    (offset,) = struct.unpack_from(">q", value, 2)
                    if last.get(key[2]) != offset:
                        found += 1
                    last[key[2]] = offset
                if message.offset() + 1 >= end:
                    return found
            raise RuntimeError(f"could not read {OFFSETS_TOPIC} to its end within 30 s")
        finally:
            self.reader.close()


def plain_captures(stream: Stream, ledger: str, count: int, limit: float) -> None:
    """What a consumer with no guarantees does: read, capture, nothing else (no commits, no
    retries); the grader's yardstick for the learner's throughput, on a ledger of its own."""
    consumer = Consumer({"bootstrap.servers": stream.kafka, "group.id": f"{stream.group}-yardstick",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False, "logger": _quiet})  # fmt: skip
    stream.other_ledgers.add(ledger)
    consumer.subscribe([stream.topic])
    headers = {"X-Ledger": ledger, "Content-Type": "application/json"}
    seen, deadline = 0, time.monotonic() + limit
    try:
        with httpx.Client(base_url=stream.shop, timeout=5) as http:
            while seen < count and time.monotonic() < deadline:
                for message in consumer.consume(num_messages=50, timeout=0.5):
                    if not message.error():
                        with contextlib.suppress(httpx.HTTPError):
                            http.post("/fulfilment/capture", content=message.value(), headers=headers)
                        seen += 1
    finally:
        consumer.close()


def capture_rate(captures: list[dict[str, Any]]) -> float:
    """Captures per second from the first to the last (start-up and group joins left out)."""
    times = sorted(c["captured_at"] for c in captures)
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0


# ---------------------------------------------------------------------- the learner's processor


@dataclass
class Processor:
    proc: subprocess.Popen[bytes]
    log: Path
    metrics_port: int
    started: float
    program: str

    def tail(self, lines: int = 3) -> str:
        text = self.log.read_text(errors="replace").strip().splitlines() if self.log.exists() else []
        return " | ".join(line.strip() for line in text[-lines:])[:400] or "(no output)"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """kill -9, no warning: what a crash or an OOM kill does."""
        kill_group(self.proc.pid)
        self.proc.wait()

    def terminate(self, grace: float = 10) -> float | None:
        """SIGTERM, then the seconds until it exited (None: still running after ``grace``, then killed)."""
        began = time.monotonic()
        signal_learner(self.proc, signal.SIGTERM)
        try:
            self.proc.wait(grace)
            return time.monotonic() - began
        except subprocess.TimeoutExpired:
            self.kill()
            return None


def metric_total(processor: Processor, name: str) -> float | None:
    """The sum of the samples named ``name`` on the processor's /metrics (None: not served)."""
    try:
        text = httpx.get(f"http://127.0.0.1:{processor.metrics_port}/metrics", timeout=5).text
        families = list(text_string_to_metric_families(text))
    except (httpx.HTTPError, ValueError):
        return None
    found = [sample.value for family in families for sample in family.samples if sample.name == name]
    return sum(found) if found else None


@dataclass
class Processors:
    """Starts the learner's processor.py for a stream (several instances, restarts); stops them all."""

    lab_path: Path
    sandbox: Sandbox
    logs: Path
    running: list[Processor] = field(default_factory=list)

    def start(self, stream: Stream) -> Processor:
        script = learner_file(self.lab_path, "processor.py")
        port = free_port()
        log = self.logs / f"processor-{stream.key}-{len(self.running)}.log"
        args = [python(), str(script), "--bootstrap", stream.kafka, "--topic", stream.topic, "--group", stream.group,
                "--fulfilment", stream.shop, "--ledger", stream.ledger, "--metrics-port", str(port)]  # fmt: skip
        proc = start_learner(args, cwd=self.lab_path, log=log, sandbox=self.sandbox, what="processor.py")
        running = Processor(proc, log, port, time.monotonic(), "processor.py")
        self.running.append(running)
        return running

    def start_streams(
        self, stream: RedisStream, consumer: str, *, claim_after: float = 2, max_deliveries: int = 4
    ) -> Processor:
        script = learner_file(self.lab_path, "streams.py")
        log = self.logs / f"streams-{stream.key}-{consumer}.log"
        # The URL carries Redis's password: it goes in the environment, never on a command line.
        args = [python(), str(script), "--stream", stream.stream, "--group", stream.group,
                "--consumer", consumer, "--claim-after", str(claim_after), "--max-deliveries", str(max_deliveries),
                "--fulfilment", stream.shop, "--ledger", stream.ledger]  # fmt: skip
        proc = start_learner(args, cwd=self.lab_path, log=log, sandbox=self.sandbox, what="streams.py",
                             env={"OPSLAB_REDIS_URL": stream.redis_url})  # fmt: skip
        running = Processor(proc, log, 0, time.monotonic(), "streams.py")
        self.running.append(running)
        return running

    def start_queue_worker(
        self, queue: SqsQueue, name: str, *, visibility: int = 4, max_receives: int = 4, base_delay: float = 1
    ) -> Processor:
        script = learner_file(self.lab_path, "queue_worker.py")
        log = self.logs / f"queue-worker-{queue.key}-{name}.log"
        args = [python(), str(script), "--queue", queue.queue, "--visibility", str(visibility),
                "--max-receives", str(max_receives), "--base-delay", str(base_delay),
                "--fulfilment", queue.shop, "--ledger", queue.ledger]  # fmt: skip
        proc = start_learner(args, cwd=self.lab_path, log=log, sandbox=self.sandbox, what="queue_worker.py",
                             env=sqs.environment_for(queue.sqs_url))  # fmt: skip
        running = Processor(proc, log, 0, time.monotonic(), "queue_worker.py")
        self.running.append(running)
        return running

    def stop_all(self) -> None:
        for running in self.running:
            if running.alive():
                stop_learner(running.proc, grace=5)


@contextlib.contextmanager
def processors(lab_path: Path, sandbox: Sandbox, logs: Path) -> Iterator[Processors]:
    started = Processors(lab_path, sandbox, logs)
    try:
        yield started
    finally:
        started.stop_all()


def progress_or_fail(stream: Ledgered, processor: Processor, at_least: int, timeout: float) -> int:
    """Wait until the ledger holds ``at_least`` distinct orders; fail clearly if the processor died."""

    def enough() -> int:
        if not processor.alive():
            raise LearnerError(
                f"{processor.program} exited with status {processor.proc.returncode}: {processor.tail()}"
            )
        orders = int(stream.summary()["orders"])
        return orders if orders >= at_least else 0

    reached = wait_for(enough, timeout)
    if not reached:
        raise LearnerError(
            f"{processor.program} captured {stream.summary()['orders']} orders in {timeout:.0f} s, "
            f"{at_least} were expected by then: {processor.tail()}"
        )
    return int(reached)
