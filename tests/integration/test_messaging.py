"""Kafka and Redis, used through their real protocols."""

from __future__ import annotations

import contextlib
import uuid

import psutil
import pytest
import redis
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from opslab.runtime import redis_auth
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
    client = redis.Redis.from_url(redis_auth.url(platform.settings), socket_timeout=3)
    key = f"cart:{uuid.uuid4().hex}"
    client.hset(key, mapping={"sku-1": 2, "sku-2": 1})
    client.expire(key, 60)
    assert client.hgetall(key) == {b"sku-1": b"2", b"sku-2": b"1"}
    assert 0 < client.ttl(key) <= 60
    client.close()


def test_redis_refuses_a_client_without_the_password(platform: Platform) -> None:
    anonymous = redis.Redis(host="127.0.0.1", port=platform.settings.ports.redis, socket_timeout=3)
    with pytest.raises(redis.AuthenticationError):
        anonymous.get("cart:anything")
    wrong = redis.Redis(host="127.0.0.1", port=platform.settings.ports.redis, password="guess", socket_timeout=3)
    with pytest.raises(redis.AuthenticationError):
        wrong.ping()
    secret = redis_auth.password_file(platform.settings)
    assert oct(secret.stat().st_mode & 0o777) == "0o600"
    word = secret.read_text().strip()
    shown = []
    for proc in platform.own_processes():
        with contextlib.suppress(psutil.Error):
            if word in " ".join(proc.cmdline()):
                shown.append(proc.pid)
    assert shown == [], "no platform process has the password on its command line (`ps` shows those to everyone)"
