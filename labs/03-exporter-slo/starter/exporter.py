"""Kafka consumer-group lag exporter (lab 3). See README.md.

usage: python exporter.py --bootstrap HOST:PORT [--port 9308]

Write a custom prometheus_client Collector whose collect() reads Kafka through the admin API
(confluent_kafka.admin.AdminClient) at each scrape and yields, for every consumer group it finds
(list them: nobody tells the exporter which groups exist) and each topic partition:
  kafka_topic_partition_current_offset{topic,partition}
  kafka_consumergroup_current_offset{group,topic,partition}
  kafka_consumergroup_lag{group,topic,partition}
plus the exporter's own health (kafka_exporter_up, a scrape-error counter).
"""

from __future__ import annotations

import argparse
import sys
import time

from prometheus_client import start_http_server


def main() -> int:
    parser = argparse.ArgumentParser(description="Prometheus exporter for Kafka consumer-group lag.")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--port", type=int, default=9308)
    args = parser.parse_args()
    # TODO task 1: register your Collector with prometheus_client's REGISTRY
    start_http_server(args.port, addr="127.0.0.1")
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
