"""Kafka and Redis, used through their real protocols."""

from __future__ import annotations

import uuid

import pytest
import redis
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from opslab.runtime.lifecycle import Platform

pytestmark = pytest.mark.platform


def test_kafka_produces_and_consumes_through_a_consumer_group(platform: Platform) -> None:
    bootstrap = f"127.0.0.1:{platform.settings.ports.kafka}"
    topic = f"test-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)]).values():
        future.result(timeout=30)

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    sent = {f"order-{i}".encode() for i in range(30)}
    for value in sent:
        producer.produce(topic, value, key=value)
    assert producer.flush(15) == 0

    group = f"group-{uuid.uuid4().hex[:6]}"
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    received: set[bytes] = set()
    try:
        for _ in range(60):
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            received.add(message.value())
            if received == sent:
                break
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    assert received == sent

    offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(timeout=15)
    assert sum(tp.offset for tp in offsets.topic_partitions if tp.topic == topic) == len(sent)


def test_redis_round_trips(platform: Platform) -> None:
    client = redis.Redis(host="127.0.0.1", port=platform.settings.ports.redis, socket_timeout=3)
    key = f"cart:{uuid.uuid4().hex}"
    client.hset(key, mapping={"sku-1": 2, "sku-2": 1})
    client.expire(key, 60)
    assert client.hgetall(key) == {b"sku-1": b"2", b"sku-2": b"1"}
    assert 0 < client.ttl(key) <= 60
    client.close()
