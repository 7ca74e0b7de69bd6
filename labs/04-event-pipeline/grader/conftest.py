"""Lab 4 grader: runs the learner's consumers (in the sandbox; they need no Kubernetes access)
against the platform's Kafka, Redis and SQS queue and the shop's fulfilment API, on topics,
streams, queues, consumer groups, ledgers and faults of the run's own (see support.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client
from support import Ledgered, Processors, RedisStream, SqsQueue, Stream, processors

from opslab.grading.fixtures import env_or_fail
from opslab.grading.sandbox import Sandbox

pytest_plugins = ["opslab.grading.fixtures"]
L = TypeVar("L", bound=Ledgered)


@pytest.fixture(scope="session")
def open_ledgered(kube_api: client.ApiClient, run_id: str, lab_namespace: str) -> Iterator[Callable[..., Any]]:
    """Opens a check's own ledger, faults and whatever carries its orders; closes them all at the end.

    A key names the ledger and seeds the order ids, so each key is used once per run: two checks
    sharing one would read each other's captures. ``lab_namespace`` is the run's anchor: it must
    exist before anything of the run does.
    """
    shop = env_or_fail("OPSLAB_SHOP_URL")
    opened: list[Ledgered] = []

    def make(kind: type[L], key: str, **settings: Any) -> L:
        if any(item.key == key for item in opened):
            raise RuntimeError(f"grader bug: two checks of one run use the key {key!r}")
        item = kind(shop=shop, api=kube_api, run_id=run_id, key=key, **settings)
        opened.append(item)
        return item

    yield make
    for item in opened:
        item.close()


@pytest.fixture(scope="session")
def open_stream(open_ledgered: Callable[..., Any]) -> Callable[..., Stream]:
    """A check's own Kafka topic and consumer group."""
    kafka = env_or_fail("OPSLAB_KAFKA_BOOTSTRAP")

    def make(key: str, partitions: int = 4) -> Stream:
        return open_ledgered(Stream, key, kafka=kafka, partitions=partitions)

    return make


@pytest.fixture(scope="session")
def open_redis_stream(open_ledgered: Callable[..., Any]) -> Callable[[str], RedisStream]:
    """A check's own Redis stream, consumer group and dead-letter stream."""
    redis_url = env_or_fail("OPSLAB_REDIS_URL")
    return lambda key: open_ledgered(RedisStream, key, redis_url=redis_url)


@pytest.fixture(scope="session")
def open_queue(open_ledgered: Callable[..., Any]) -> Callable[[str], SqsQueue]:
    """A check's own SQS queue (and the learner's DLQ beside it)."""
    sqs_url = env_or_fail("OPSLAB_SQS_URL")
    return lambda key: open_ledgered(SqsQueue, key, sqs_url=sqs_url)


@pytest.fixture
def started(lab_path: Path, sandbox: Sandbox, tmp_path: Path) -> Iterator[Processors]:
    """The learner's processors a check starts; all stopped when it ends."""
    with processors(lab_path, sandbox, tmp_path) as running:
        yield running
