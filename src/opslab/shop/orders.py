"""Orders on Kafka: checkout publishes to topic `orders`; orders-worker consumes them.

The worker's throughput follows the model too: each ready orders-worker pod processes
PER_REPLICA_RATE orders per second, and a slow-consumer fault caps it lower, so Kafka lag builds
when the worker is scaled down, crashing, or throttled. An event that breaks the order contract
(a poison order) is counted, logged and skipped: it never stops the worker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from opslab.shop import contract
from opslab.shop.faults import FaultType
from opslab.shop.telemetry import Metrics, ServiceLogs

ORDERS_TOPIC = "orders"
CONSUMER_GROUP = "orders-worker"
PER_REPLICA_RATE = 25.0
"""Orders per second one ready orders-worker pod processes."""

log = logging.getLogger("opslab.shop")
_quiet = logging.getLogger("opslab.shop.kafka")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


class OrderBus:
    """The producer side. ``publish`` never blocks; it refuses while every broker is down."""

    def __init__(self, bootstrap: str, metrics: Metrics) -> None:
        self.metrics = metrics
        self.brokers_up = True
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "1",
                "linger.ms": 5,
                "message.timeout.ms": 10000,
                "reconnect.backoff.max.ms": 2000,
                "error_cb": self._on_error,
                "logger": _quiet,
            }
        )
        self._stop = threading.Event()
        threading.Thread(target=self._poll, daemon=True).start()

    def _on_error(self, error: KafkaError) -> None:
        if error.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            self.brokers_up = False
            self.metrics.dependency_up.labels("kafka").set(0)

    def _delivered(self, error: KafkaError | None, _message: Any) -> None:
        if error is None:
            self.brokers_up = True
            self.metrics.dependency_up.labels("kafka").set(1)
            self.metrics.orders_published.inc()
        else:
            self.metrics.orders_publish_failures.inc()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.2)

    def probe(self) -> None:
        """Ask the brokers for metadata; a success clears the down flag."""
        try:
            self._producer.list_topics(timeout=2)
            self.brokers_up = True
            self.metrics.dependency_up.labels("kafka").set(1)
        except Exception:
            self.brokers_up = False
            self.metrics.dependency_up.labels("kafka").set(0)

    def publish(self, key: str, value: bytes) -> bool:
        """Publish one order event (``value``, JSON text) keyed by its order id."""
        if not self.brokers_up:
            return False
        try:
            self._producer.produce(ORDERS_TOPIC, value, key=key.encode(), on_delivery=self._delivered)
        except BufferError:
            self.metrics.orders_publish_failures.inc()
            return False
        return True

    def close(self) -> None:
        self._stop.set()
        self._producer.flush(5)


class OrdersWorker:
    """orders-worker: a real consumer group member whose pace follows the model."""

    def __init__(
        self,
        bootstrap: str,
        metrics: Metrics,
        logs: ServiceLogs,
        capacity: Callable[[], int],
        throttle: Callable[[], float | None],
    ) -> None:
        self.bootstrap = bootstrap
        self.metrics = metrics
        self.logs = logs
        self.capacity = capacity
        self.throttle = throttle
        self._stop = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def rate(self) -> float:
        """Orders per second the worker may process now."""
        rate = self.capacity() * PER_REPLICA_RATE
        cap = self.throttle()
        return min(rate, cap) if cap is not None else rate

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._consume()
            except Exception as exc:
                log.warning("orders-worker consumer restarted after: %s", exc)
                time.sleep(2)

    def _consume(self) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": CONSUMER_GROUP,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": True,
                "auto.commit.interval.ms": 1000,
                "session.timeout.ms": 10000,
                "heartbeat.interval.ms": 2000,
                "logger": _quiet,
            }
        )
        consumer.subscribe([ORDERS_TOPIC])
        last_lag = 0.0
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now - last_lag > 2:
                    try:
                        self._record_lag(consumer)
                    except KafkaException as exc:  # e.g. during a rebalance; try again next time
                        log.debug("Consumer lag not measured: %s", exc)
                    last_lag = now
                rate = self.rate()
                if rate <= 0:
                    time.sleep(0.5)  # no ready replica: nothing is consumed, lag grows
                    continue
                message = consumer.poll(0.5)
                if message is None or message.error():
                    continue
                self.process(message.value(), message.partition(), message.offset())
                time.sleep(1.0 / rate)
        finally:
            consumer.close()

    def process(self, value: bytes | None, partition: int | None = None, offset: int | None = None) -> bool:
        """Handle one event: True if it was an order, False if it broke the contract and was skipped."""
        order = contract.parse(value)
        if isinstance(order, contract.Violation):
            self.metrics.orders_rejected.labels(order.reason.value).inc()
            self.logs.write(
                "orders-worker", "warning", f"skipped a poison order: {order.message}",
                reason=order.reason.value, partition=partition, offset=offset,
            )  # fmt: skip
            return False
        self.metrics.orders_consumed.inc()
        self.logs.write("orders-worker", "info", "order processed", order_id=order.order_id)
        return True

    def _record_lag(self, consumer: Consumer) -> None:
        assigned = consumer.assignment()
        if not assigned:
            metadata = consumer.list_topics(ORDERS_TOPIC, timeout=2)
            partitions = metadata.topics[ORDERS_TOPIC].partitions if ORDERS_TOPIC in metadata.topics else {}
            assigned = [TopicPartition(ORDERS_TOPIC, p) for p in partitions]
        committed = consumer.committed(assigned, timeout=2)
        lag = 0
        for tp in committed:
            _low, high = consumer.get_watermark_offsets(tp, timeout=2, cached=False)
            lag += high - (tp.offset if tp.offset >= 0 else 0)
        self.metrics.consumer_lag.set(max(lag, 0))


def slow_consumer_cap(faults: Iterable[Any]) -> float | None:
    """The throughput cap a slow-consumer fault sets, if one is active."""
    caps = [f.messages_per_second for f in faults if f.type is FaultType.SLOW_CONSUMER]
    return min(caps) if caps else None
