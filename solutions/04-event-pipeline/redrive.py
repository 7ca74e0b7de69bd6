"""Lab 4 reference solution: look into the dead-letter topic and re-drive what a fix has made good.

usage: python redrive.py list  [--topic orders] [--error-class C] [--order ID]
       python redrive.py apply [--topic orders] [--error-class C] [--order ID]

``list`` prints one JSON line per dead letter (its offset, headers and order id) and changes
nothing. ``apply`` sends the matching dead letters back to the main topic, each once: every
re-driven dead letter is recorded in ``<topic>.dlq.redriven`` (a compacted topic keyed by the dead
letter's partition and offset), and a dead letter recorded there is never sent again, even by a
later run. A crash between the two writes sends a letter twice at worst, which the processor's
idempotency absorbs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def headers_of(message: Message) -> dict[str, str]:
    return {k: (v or b"").decode() for k, v in message.headers() or []}


def read_all(bootstrap: str, topic: str) -> Iterator[Message]:
    """Every message of ``topic`` from the beginning to its current end (no group, nothing committed)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "redrive-reader", "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return
        ends = {}
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high > low:
                ends[partition] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        while ends:
            message = consumer.poll(5)
            if message is None:
                raise TimeoutError(f"reading {topic} stalled")
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise RuntimeError(str(message.error()))
            yield message
            if message.offset() + 1 >= ends.get(message.partition(), 0):
                ends.pop(message.partition(), None)
    finally:
        consumer.close()


def ensure_ledger(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    if topic in admin.list_topics(timeout=10).topics:
        return
    future = admin.create_topics([NewTopic(topic, 1, 1, config={"cleanup.policy": "compact"})])[topic]
    try:
        future.result(10)
    except Exception as exc:
        if "TOPIC_ALREADY_EXISTS" not in str(exc):
            raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="List or re-drive dead letters, each once.")
    parser.add_argument("action", choices=["list", "apply"])
    parser.add_argument("--bootstrap", default=os.environ.get("OPSLAB_KAFKA_BOOTSTRAP", "127.0.0.1:19092"))
    parser.add_argument("--topic", default="orders", help="the main topic (its dead letters are in <topic>.dlq)")
    parser.add_argument("--error-class", help="only dead letters of this error-class header")
    parser.add_argument("--order", help="only the dead letter of this order id (the message key)")
    args = parser.parse_args(argv)
    dlq, ledger = f"{args.topic}.dlq", f"{args.topic}.dlq.redriven"

    def wanted(message: Message) -> bool:
        seen = headers_of(message)
        if args.error_class and seen.get("error-class") != args.error_class:
            return False
        return not args.order or (message.key() or b"").decode() == args.order

    done = {(m.key() or b"").decode() for m in read_all(args.bootstrap, ledger)}
    chosen = [m for m in read_all(args.bootstrap, dlq) if wanted(m)]
    if args.action == "list":
        for m in chosen:
            record: dict[str, Any] = {
                "partition": m.partition(), "offset": m.offset(), "order": (m.key() or b"").decode(),
                "headers": headers_of(m), "redriven": f"{m.partition()}:{m.offset()}" in done,
            }  # fmt: skip
            print(json.dumps(record))
        return 0
    ensure_ledger(args.bootstrap, ledger)
    producer = Producer({"bootstrap.servers": args.bootstrap, "enable.idempotence": True})
    sent = 0
    for m in chosen:
        letter = f"{m.partition()}:{m.offset()}"
        if letter in done:
            continue
        producer.produce(args.topic, m.value(), key=m.key(), headers=[("redriven-from", f"{dlq}/{letter}".encode())])
        producer.flush(10)  # on the main topic before it is recorded as done
        producer.produce(ledger, b"1", key=letter.encode())
        sent += 1
    if producer.flush(10) > 0:
        print("error: the broker did not acknowledge every write; run again (nothing is sent twice)", file=sys.stderr)
        return 1
    print(
        json.dumps(
            {
                "redriven": sent,
                "skipped_already_redriven": len([m for m in chosen if f"{m.partition()}:{m.offset()}" in done]),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
