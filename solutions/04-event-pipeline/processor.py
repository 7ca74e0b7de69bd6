"""Lab 4 reference solution: a Kafka order processor that loses nothing and does nothing twice.

usage: python processor.py [--bootstrap HOST:PORT] [--topic orders] [--group orders-processor]
                           [--fulfilment URL] [--ledger NAME] [--metrics-port PORT]

Design (the README's "what good looks like"):
- at least once: offsets are committed only for messages whose effect is durable (the capture was
  accepted, or the message was written to a retry or dead-letter topic and the broker acked it);
  no auto-commit. Commits are asynchronous and batched (every COMMIT_EVERY seconds), synchronous
  on partition revocation and at shutdown; an offset counts as committed only once the broker
  confirms it (on_commit), so one lost to a rebalance is sent again.
- exactly-once effects: every capture carries the order id as its Idempotency-Key, so a
  redelivered order is answered with the original capture instead of capturing twice.
- non-blocking retries: a transient failure moves the order to the retry tier of its attempt
  (``<topic>.retry.<n>``, delay BASE * 2**(n-1) with jitter); the main partition goes on. A retry
  partition whose head is not due yet is paused and resumed when it is, so waiting costs nothing.
- dead letters: permanent failures (the API's 4xx, malformed orders) and exhausted retries go to
  ``<topic>.dlq`` with headers saying why, how often, and where the message came from.
- graceful: SIGTERM finishes the message in hand, flushes, commits and exits (well within 10 s).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from fulfilment import Fulfilment, Permanent, Transient
from prometheus_client import Counter, Gauge, start_http_server

COMMIT_EVERY = 2.0
"""Seconds between asynchronous commits of finished work."""

PROCESSED = Counter("orders_processed", "Orders handled, by outcome", ["outcome"])
RETRIED = Counter("orders_retried", "Orders sent to a retry tier after a transient failure", ["tier"])
DEAD_LETTERED = Counter("orders_dead_lettered", "Orders sent to the dead-letter topic", ["error_class"])
IN_FLIGHT = Gauge("orders_in_flight", "Orders taken from Kafka whose outcome is not durable yet")
LAG = Gauge("orders_consumer_lag", "Messages behind the partition's end", ["topic", "partition"])


@dataclass
class Settings:
    bootstrap: str
    topic: str
    group: str
    fulfilment: str
    ledger: str
    attempts: int
    base_delay: float
    timeout: float

    @property
    def dlq(self) -> str:
        return f"{self.topic}.dlq"

    def tier(self, attempt: int) -> str:
        """The retry topic for an order that has failed ``attempt`` times."""
        return f"{self.topic}.retry.{attempt}"

    def delay(self, attempt: int) -> float:
        """Exponential backoff with jitter: BASE * 2**(attempt-1), +-20 %."""
        return self.base_delay * 2 ** (attempt - 1) * random.uniform(0.8, 1.2)

    @property
    def topics(self) -> list[str]:
        return [self.topic, *(self.tier(n) for n in range(1, self.attempts))]


@dataclass
class Progress:
    """Per partition: the next offset to commit (everything before it is durable)."""

    done: dict[tuple[str, int], int] = field(default_factory=dict)
    committed: dict[tuple[str, int], int] = field(default_factory=dict)

    def finish(self, message: Message) -> None:
        self.done[(message.topic(), message.partition())] = message.offset() + 1

    def pending(self, only: set[tuple[str, int]] | None = None) -> list[TopicPartition]:
        return [
            TopicPartition(t, p, offset)
            for (t, p), offset in self.done.items()
            if self.committed.get((t, p)) != offset and (only is None or (t, p) in only)
        ]

    def forget(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.done.pop((tp.topic, tp.partition), None)
            self.committed.pop((tp.topic, tp.partition), None)


def headers_of(message: Message) -> dict[str, str]:
    return {k: (v or b"").decode() for k, v in message.headers() or []}


class Processor:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.stopping = False
        self.progress = Progress()
        self.paused: dict[tuple[str, int], float] = {}  # retry partitions waiting for their head to be due
        self.owned: set[tuple[str, int]] = set()  # the partitions assigned to us now
        self.fulfilment = Fulfilment(settings.fulfilment, settings.ledger, settings.timeout)
        self.producer = Producer(
            {
                "bootstrap.servers": settings.bootstrap,
                "enable.idempotence": True,  # acks=all, no duplicates from the producer's own retries
                "linger.ms": 5,
            }
        )
        self.consumer = Consumer(
            {
                "bootstrap.servers": settings.bootstrap,
                "group.id": settings.group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "partition.assignment.strategy": "cooperative-sticky",
                "session.timeout.ms": 10000,
                "max.poll.interval.ms": 60000,
                # A subscribed topic missing from the metadata is only looked for again at the next
                # refresh (5 min by default): a retry tier created a moment ago must not wait that long.
                "topic.metadata.refresh.interval.ms": 5000,
                "on_commit": self.on_commit,
            }
        )

    # ------------------------------------------------------------------ the effect

    def handle(self, message: Message) -> str:
        """Process one message; returns its outcome once that outcome is durable (or queued to be)."""
        attempt = int(headers_of(message).get("attempt", "0"))
        try:
            order = json.loads(message.value())
            if not isinstance(order, dict) or not isinstance(order.get("order_id"), str):
                raise ValueError("not an order: no order_id")
            self.fulfilment.capture(order, idempotency_key=order["order_id"])
            return "captured"
        except ValueError as exc:
            return self.dead_letter(message, attempt + 1, "malformed", str(exc))
        except Permanent as exc:
            return self.dead_letter(message, attempt + 1, "rejected", str(exc))
        except Transient as exc:
            if attempt + 1 >= self.s.attempts:
                return self.dead_letter(message, attempt + 1, "retries-exhausted", str(exc))
            return self.retry(message, attempt + 1, str(exc))

    def origin(self, message: Message) -> dict[str, str]:
        """Where a message first came from (kept across retry tiers)."""
        seen = headers_of(message)
        if "original-topic" in seen:
            return {k: seen[k] for k in ("original-topic", "original-partition", "original-offset")}
        return {
            "original-topic": message.topic(),
            "original-partition": str(message.partition()),
            "original-offset": str(message.offset()),
        }

    def retry(self, message: Message, attempt: int, error: str) -> str:
        due = time.time() + self.s.delay(attempt)
        headers = {**self.origin(message), "attempt": str(attempt), "due": f"{due:.3f}", "error-message": error}
        self.producer.produce(self.s.tier(attempt), message.value(), key=message.key(), headers=list(headers.items()))
        RETRIED.labels(str(attempt)).inc()
        return "retried"

    def dead_letter(self, message: Message, attempts: int, error_class: str, error: str) -> str:
        headers = {
            **self.origin(message),
            "error-class": error_class,
            "error-message": error[:500],
            "attempts": str(attempts),
            "failed-at": f"{time.time():.3f}",
        }
        self.producer.produce(self.s.dlq, message.value(), key=message.key(), headers=list(headers.items()))
        DEAD_LETTERED.labels(error_class).inc()
        return "dead-lettered"

    # ------------------------------------------------------------------ offsets

    def commit(self, *, only: set[tuple[str, int]] | None = None, wait: bool = False) -> None:
        """Commit finished work: first make sure every retry and dead letter is on the broker."""
        offsets = self.progress.pending(only)
        if not offsets:
            return
        if self.producer.flush(10) > 0:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "retry/dead-letter writes not acknowledged"))
        try:
            done = self.consumer.commit(offsets=offsets, asynchronous=not wait)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                raise
            return
        if wait and done:
            self.on_commit(None, done)

    def on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """What the broker confirmed is committed; an async commit that failed (a rebalance was under
        way) stays pending, so the next commit, or the one on revoke, sends it again."""
        if error is not None:
            print(f"processor: commit failed, will retry: {error}", file=sys.stderr)
            return
        for tp in partitions:
            key = (tp.topic, tp.partition)
            if tp.error is None and key in self.progress.done:
                self.progress.committed[key] = max(self.progress.committed.get(key, -1), tp.offset)

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Hand the partitions over cleanly: commit what is done before another member takes them."""
        keys = {(tp.topic, tp.partition) for tp in partitions}
        self.owned -= keys
        try:
            self.commit(only=keys, wait=True)
        except KafkaException as exc:  # the group moved on: the next owner redoes, idempotency absorbs it
            print(f"processor: commit on revoke failed: {exc}", file=sys.stderr)
        self.progress.forget(partitions)
        for key in keys:
            self.paused.pop(key, None)

    # ------------------------------------------------------------------ the loop

    def wait_until_due(self, message: Message) -> bool:
        """A retry whose time has not come: pause its partition and rewind to it."""
        due = float(headers_of(message).get("due", "0"))
        if due <= time.time():
            return False
        tp = TopicPartition(message.topic(), message.partition(), message.offset())
        self.consumer.pause([tp])
        self.consumer.seek(tp)
        self.paused[(tp.topic, tp.partition)] = due
        return True

    def resume_due(self) -> None:
        now = time.time()
        due = [key for key, when in self.paused.items() if when <= now]
        if due:
            self.consumer.resume([TopicPartition(t, p) for t, p in due])
            for key in due:
                del self.paused[key]

    def ensure_topics(self) -> None:
        """Create the retry tiers and the dead-letter topic up front: a consumer only sees topics
        that existed when it subscribed (until its next metadata refresh, minutes later)."""
        admin = AdminClient({"bootstrap.servers": self.s.bootstrap})
        main = admin.list_topics(self.s.topic, timeout=10).topics.get(self.s.topic)
        partitions = len(main.partitions) if main is not None and main.partitions else 1
        names = [*self.s.topics[1:], self.s.dlq]
        wanted = [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in names]
        for topic, future in admin.create_topics(wanted).items():
            try:
                future.result(15)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise RuntimeError(f"cannot create {topic}: {exc}") from None
        # Created is not yet visible: subscribe only once every topic has partitions with a leader.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            known = admin.list_topics(timeout=10).topics
            if all(t in known and known[t].partitions and all(p.leader >= 0 for p in known[t].partitions.values())
                   for t in names):  # fmt: skip
                return
            time.sleep(0.2)

    def run(self) -> None:
        self.ensure_topics()
        self.consumer.subscribe(self.s.topics, on_assign=self.on_assign, on_revoke=self.on_revoke, on_lost=self.on_lost)
        last_commit = time.monotonic()
        while not self.stopping:
            self.resume_due()
            batch = self.consumer.consume(num_messages=50, timeout=0.2)
            IN_FLIGHT.set(len(batch))
            skip: set[tuple[str, int]] = set()
            for message in batch:
                key = (message.topic(), message.partition())
                if message.error():
                    if message.error().code() != KafkaError._PARTITION_EOF:
                        print(f"processor: {message.error()}", file=sys.stderr)
                    continue
                if key not in self.owned:
                    continue  # fetched before its partition was revoked in this consume(): its new owner has it
                if key in skip or key in self.paused:
                    continue  # rewound to a retry that is not due: the rest comes again later
                if message.topic() != self.s.topic and self.wait_until_due(message):
                    skip.add(key)
                    continue
                PROCESSED.labels(self.handle(message)).inc()
                self.progress.finish(message)
                if self.stopping:
                    break
            IN_FLIGHT.set(0)
            if time.monotonic() - last_commit >= COMMIT_EVERY:
                self.commit()
                self.report_lag()
                last_commit = time.monotonic()
        try:
            self.commit(wait=True)
        except KafkaException as exc:
            # A rebalance is under way (the group's generation moved on): close() below revokes
            # what is still ours, and on_revoke commits it in the new generation.
            print(f"processor: final commit deferred to the revoke: {exc}", file=sys.stderr)
        self.consumer.close()  # leaves the group now: its partitions move without waiting for a timeout

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions added to ours (cooperative rebalancing hands them over a few at a time)."""
        self.owned |= {(tp.topic, tp.partition) for tp in partitions}

    def on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions lost without a revoke (session timed out): their work is not ours to commit."""
        self.owned -= {(tp.topic, tp.partition) for tp in partitions}
        self.progress.forget(partitions)
        for tp in partitions:
            self.paused.pop((tp.topic, tp.partition), None)

    def report_lag(self) -> None:
        for tp in self.consumer.assignment():
            if tp.topic != self.s.topic:
                continue
            _, high = self.consumer.get_watermark_offsets(tp, cached=True) or (0, 0)
            position = self.progress.done.get((tp.topic, tp.partition))
            if position is not None and high >= 0:
                LAG.labels(tp.topic, str(tp.partition)).set(max(0, high - position))


def parse(argv: list[str] | None = None) -> tuple[Settings, int]:
    parser = argparse.ArgumentParser(description="Capture each order on Kafka exactly once.")
    parser.add_argument("--bootstrap", default=os.environ.get("OPSLAB_KAFKA_BOOTSTRAP", "127.0.0.1:19092"))
    parser.add_argument("--topic", default="orders")
    parser.add_argument("--group", default="orders-processor")
    parser.add_argument("--fulfilment", default=os.environ.get("FULFILMENT_URL", "http://127.0.0.1:18080"))
    parser.add_argument("--ledger", default=os.environ.get("FULFILMENT_LEDGER", ""), help="ledger (X-Ledger)")
    parser.add_argument("--metrics-port", type=int, default=9410)
    parser.add_argument("--attempts", type=int, default=4, help="tries before an order is dead-lettered")
    parser.add_argument("--base-delay", type=float, default=0.5, help="first retry delay, seconds")
    parser.add_argument("--timeout", type=float, default=2.0, help="fulfilment request timeout, seconds")
    args = parser.parse_args(argv)
    if args.attempts < 1 or args.base_delay <= 0 or args.timeout <= 0:
        parser.error("--attempts must be >= 1, --base-delay and --timeout > 0")
    settings = Settings(
        args.bootstrap, args.topic, args.group, args.fulfilment.rstrip("/"), args.ledger,
        args.attempts, args.base_delay, args.timeout,
    )  # fmt: skip
    return settings, args.metrics_port


def main(argv: list[str] | None = None) -> int:
    settings, metrics_port = parse(argv)
    try:
        start_http_server(metrics_port, addr="127.0.0.1")
    except OSError as exc:
        print(f"error: cannot serve metrics on 127.0.0.1:{metrics_port} ({exc.strerror}); pick --metrics-port",
              file=sys.stderr)  # fmt: skip
        return 2
    processor = Processor(settings)

    def stop(_signum: int, _frame: Any) -> None:
        processor.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    processor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
