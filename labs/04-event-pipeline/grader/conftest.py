"""Lab 4 grader: runs the learner's consumers (in the sandbox; they need no Kubernetes access)
against the platform's Kafka and the shop's fulfilment API, on topics, consumer groups, ledgers
and faults of the run's own (see support.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client
from support import Processors, RedisStream, SqsQueue, Stream, env_or_fail, processors

from opslab.grading.sandbox import Sandbox

pytest_plugins = ["opslab.grading.fixtures"]


@pytest.fixture(scope="session")
def open_stream(kube_api: client.ApiClient, run_id: str, lab_namespace: str) -> Iterator[Callable[..., Stream]]:
    """Opens a check's own stream (topic, group, ledger, faults); closes them all at the end.

    ``lab_namespace`` is the run's anchor: it must exist before anything of the run does.
    """
    kafka, shop = env_or_fail("OPSLAB_KAFKA_BOOTSTRAP"), env_or_fail("OPSLAB_SHOP_URL")
    opened: list[Stream] = []

    def make(key: str, partitions: int = 4) -> Stream:
        stream = Stream(kafka=kafka, shop=shop, api=kube_api, run_id=run_id, key=key, partitions=partitions)
        opened.append(stream)
        return stream

    yield make
    for stream in opened:
        stream.close()


@pytest.fixture(scope="session")
def open_redis_stream(
    kube_api: client.ApiClient, run_id: str, lab_namespace: str
) -> Iterator[Callable[[str], RedisStream]]:
    """Opens a check's own Redis stream (key, group, dead-letter stream, ledger, faults); removes them at the end."""
    redis_url, shop = env_or_fail("OPSLAB_REDIS_URL"), env_or_fail("OPSLAB_SHOP_URL")
    opened: list[RedisStream] = []

    def make(key: str) -> RedisStream:
        stream = RedisStream(redis_url=redis_url, shop=shop, api=kube_api, run_id=run_id, key=key)
        opened.append(stream)
        return stream

    yield make
    for stream in opened:
        stream.close()


@pytest.fixture(scope="session")
def open_queue(kube_api: client.ApiClient, run_id: str, lab_namespace: str) -> Iterator[Callable[[str], SqsQueue]]:
    """Opens a check's own SQS queue (its DLQ, ledger and faults); removes them at the end."""
    sqs_url, shop = env_or_fail("OPSLAB_SQS_URL"), env_or_fail("OPSLAB_SHOP_URL")
    opened: list[SqsQueue] = []

    def make(key: str) -> SqsQueue:
        queue = SqsQueue(sqs_url=sqs_url, shop=shop, api=kube_api, run_id=run_id, key=key)
        opened.append(queue)
        return queue

    yield make
    for queue in opened:
        queue.close()


@pytest.fixture
def started(lab_path: Path, sandbox: Sandbox, tmp_path: Path) -> Iterator[Processors]:
    """The learner's processors a check starts; all stopped when it ends."""
    with processors(lab_path, sandbox, tmp_path) as running:
        yield running
