"""Kafka consumer-group lag exporter (lab 3 reference solution).

A custom prometheus_client Collector: on every scrape it reads the topics' end offsets and each
consumer group's committed offsets through Kafka's admin API, and yields:

  kafka_topic_partition_current_offset{topic,partition}          gauge   end offset (high watermark)
  kafka_consumergroup_current_offset{group,topic,partition}      gauge   committed offset
  kafka_consumergroup_lag{group,topic,partition}                 gauge   messages not yet processed
  kafka_exporter_up                                              gauge   1 if the last scrape reached Kafka
  kafka_exporter_scrapes_total, kafka_exporter_scrape_errors_total counters
  kafka_exporter_scrape_duration_seconds                         gauge

It discovers every consumer group at each scrape (--group limits it to some, for a large cluster).

usage: python exporter.py --bootstrap HOST:PORT [--port 9308] [--group GROUP ...]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterable

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
from prometheus_client import start_http_server
from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

quiet = logging.getLogger("exporter.kafka")
quiet.addHandler(logging.NullHandler())
quiet.propagate = False


class KafkaLagCollector(Collector):
    def __init__(self, bootstrap: str, groups: list[str] | None = None, timeout: float = 5.0) -> None:
        self.admin = AdminClient({"bootstrap.servers": bootstrap, "logger": quiet, "socket.timeout.ms": 3000})
        self.groups = groups
        self.timeout = timeout
        self.scrapes = 0
        self.errors = 0

    def collect(self) -> Iterable[Metric]:
        began = time.monotonic()
        self.scrapes += 1
        up = 1
        families: list[Metric] = []
        try:
            families = self._kafka()
        except (KafkaException, TimeoutError, RuntimeError):
            self.errors += 1
            up = 0
        yield from families
        yield GaugeMetricFamily(
            "kafka_exporter_up", "Whether the last scrape could read Kafka (1) or not (0).", value=up
        )
        yield CounterMetricFamily("kafka_exporter_scrapes", "Scrapes of this exporter.", value=self.scrapes)
        yield CounterMetricFamily(
            "kafka_exporter_scrape_errors", "Scrapes that could not read Kafka.", value=self.errors
        )
        yield GaugeMetricFamily(
            "kafka_exporter_scrape_duration_seconds", "How long the last scrape took.", value=time.monotonic() - began
        )

    def _kafka(self) -> list[Metric]:
        metadata = self.admin.list_topics(timeout=self.timeout)
        partitions = [
            TopicPartition(topic, p)
            for topic, info in metadata.topics.items()
            if not topic.startswith("__")
            for p in info.partitions
        ]
        ends: dict[tuple[str, int], int] = {}
        if partitions:
            futures = self.admin.list_offsets(
                {tp: OffsetSpec.latest() for tp in partitions}, request_timeout=self.timeout
            )
            for tp, future in futures.items():
                ends[(tp.topic, tp.partition)] = future.result().offset
        current = GaugeMetricFamily(
            "kafka_topic_partition_current_offset", "End offset (high watermark) of a topic partition.",
            labels=["topic", "partition"],
        )  # fmt: skip
        for (topic, partition), offset in sorted(ends.items()):
            current.add_metric([topic, str(partition)], offset)

        committed = GaugeMetricFamily(
            "kafka_consumergroup_current_offset", "Offset a consumer group committed on a partition.",
            labels=["group", "topic", "partition"],
        )  # fmt: skip
        lag = GaugeMetricFamily(
            "kafka_consumergroup_lag", "Messages of a partition a consumer group has not processed (end - committed).",
            labels=["group", "topic", "partition"],
        )  # fmt: skip
        groups = self.groups or [g.group_id for g in self.admin.list_consumer_groups().result(self.timeout).valid]
        for group in sorted(groups):
            answer = self.admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group]
            for tp in answer.result(self.timeout).topic_partitions:
                if tp.offset < 0 or (tp.topic, tp.partition) not in ends:
                    continue
                labels = [group, tp.topic, str(tp.partition)]
                committed.add_metric(labels, tp.offset)
                lag.add_metric(labels, max(ends[(tp.topic, tp.partition)] - tp.offset, 0))
        return [current, committed, lag]


def main() -> int:
    parser = argparse.ArgumentParser(description="Prometheus exporter for Kafka consumer-group lag.")
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers, host:port")
    parser.add_argument("--port", type=int, default=9308, help="port for /metrics on 127.0.0.1")
    parser.add_argument("--group", action="append", dest="groups", help="only these consumer groups (repeatable)")
    try:
        args = parser.parse_args()
    except SystemExit as exit_:
        return int(exit_.code or 0)
    if not 1 <= args.port <= 65535:
        print(f"error: --port {args.port} is not a port number (1-65535)", file=sys.stderr)
        return 2
    REGISTRY.register(KafkaLagCollector(args.bootstrap, args.groups))
    try:
        start_http_server(args.port, addr="127.0.0.1")
    except OSError as exc:
        print(f"error: --port {args.port}: cannot listen on 127.0.0.1:{args.port} ({exc.strerror})", file=sys.stderr)
        return 2
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
