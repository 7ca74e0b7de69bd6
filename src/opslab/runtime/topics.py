"""Kafka topics declared in platform/kafka/topics.yaml, created if missing."""

from __future__ import annotations

from pathlib import Path

import yaml
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from opslab.primitives.errors import ComponentFailed


def declared(path: Path) -> list[dict[str, object]]:
    return list(yaml.safe_load(path.read_text())["topics"])


def ensure(bootstrap: str, path: Path) -> list[str]:
    """Create each declared topic that does not exist; return the names created."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=10).topics)
    wanted = [t for t in declared(path) if t["name"] not in existing]
    if not wanted:
        return []
    futures = admin.create_topics(
        [
            NewTopic(
                str(t["name"]),
                num_partitions=int(t.get("partitions", 1)),  # type: ignore[call-overload]
                replication_factor=1,
                config={str(k): str(v) for k, v in dict(t.get("config") or {}).items()},  # type: ignore[call-overload]
            )
            for t in wanted
        ]
    )
    for name, future in futures.items():
        try:
            future.result(timeout=30)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise ComponentFailed(f"cannot create Kafka topic {name}: {exc}") from None
    return [str(t["name"]) for t in wanted]
