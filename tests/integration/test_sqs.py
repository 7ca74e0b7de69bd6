"""The SQS-compatible queue (ElasticMQ), used through boto3 as labs use it."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import boto3
import psutil
import pytest

from opslab.runtime import sqs
from opslab.runtime.endpoints import endpoint_environment
from opslab.runtime.lifecycle import Platform

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

pytestmark = pytest.mark.platform

MAX_RECEIVES = 2


@pytest.fixture
def queues(platform: Platform) -> Iterator[tuple[SQSClient, list[str]]]:
    """The platform's SQS client and a list of queue URLs the test creates (deleted afterwards)."""
    client = sqs.client(sqs.endpoint(platform.settings))
    created: list[str] = []
    yield client, created
    for url in created:
        client.delete_queue(QueueUrl=url)


def receive(client: SQSClient, url: str, *, wait: int = 2, attributes: bool = False) -> list[Any]:
    """One long-polling receive of up to 10 messages (with their receive count if ``attributes``)."""
    extra: dict[str, Any] = {"MessageSystemAttributeNames": ["ApproximateReceiveCount"]} if attributes else {}
    reply = client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait, **extra)
    return list(reply.get("Messages", []))


def test_elasticmq_listens_only_on_its_sqs_port_on_loopback(platform: Platform) -> None:
    jvm = psutil.Process(platform.supervisor.state("elasticmq").pid)
    listening = [c.laddr for c in jvm.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert {addr.port for addr in listening} == {platform.settings.ports.sqs}
    assert {addr.ip for addr in listening} <= {"127.0.0.1", "::ffff:127.0.0.1"}


def test_the_endpoint_environment_is_enough_for_plain_boto3(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in endpoint_environment(platform.settings).items():
        monkeypatch.setenv(key, value)
    name = f"env-{uuid.uuid4().hex[:8]}"
    plain = boto3.session.Session().client("sqs")  # what a learner's program does after `source .opslab/env`
    url = plain.create_queue(QueueName=name)["QueueUrl"]
    try:
        assert url.startswith(sqs.endpoint(platform.settings) + "/")
        assert sqs.client().get_queue_url(QueueName=name)["QueueUrl"] == url
    finally:
        plain.delete_queue(QueueUrl=url)


def test_a_poison_message_moves_to_the_dead_letter_queue_after_max_receives(
    queues: tuple[SQSClient, list[str]],
) -> None:
    client, created = queues
    suffix = uuid.uuid4().hex[:8]
    dlq = client.create_queue(QueueName=f"orders-dlq-{suffix}")["QueueUrl"]
    created.append(dlq)
    dlq_arn = client.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    assert dlq_arn == sqs.queue_arn(f"orders-dlq-{suffix}")
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVES)}
    main = client.create_queue(
        QueueName=f"orders-{suffix}", Attributes={"RedrivePolicy": json.dumps(redrive), "VisibilityTimeout": "30"}
    )["QueueUrl"]
    created.append(main)
    stored = client.get_queue_attributes(QueueUrl=main, AttributeNames=["RedrivePolicy"])["Attributes"]
    assert json.loads(stored["RedrivePolicy"])["deadLetterTargetArn"] == dlq_arn

    # Long polling: an empty queue holds the request for WaitTimeSeconds, then answers with nothing...
    began = time.monotonic()
    assert receive(client, main, wait=1) == []
    assert time.monotonic() - began >= 0.9
    # ...and a message sent meanwhile ends the wait as soon as it arrives.
    sender = threading.Timer(1.0, lambda: client.send_message(QueueUrl=main, MessageBody="poison"))
    sender.start()
    began = time.monotonic()
    first = receive(client, main, wait=10, attributes=True)
    waited = time.monotonic() - began
    sender.join()
    assert [m["Body"] for m in first] == ["poison"]
    assert 0.5 <= waited < 8, f"the long poll answered after {waited:.1f}s"
    assert first[0]["Attributes"]["ApproximateReceiveCount"] == "1"

    sent = client.send_message_batch(
        QueueUrl=main, Entries=[{"Id": f"ok-{i}", "MessageBody": f"order-{i}"} for i in range(3)]
    )
    assert len(sent["Successful"]) == 3 and not sent.get("Failed")

    # The consumer fails on the poison message: it gives it back at once (visibility 0) while it
    # keeps the good ones hidden longer (visibility 60) until it has processed them.
    client.change_message_visibility(QueueUrl=main, ReceiptHandle=first[0]["ReceiptHandle"], VisibilityTimeout=0)
    second = {m["Body"]: m for m in receive(client, main, attributes=True)}
    deadline = time.monotonic() + 10
    while len(second) < 4 and time.monotonic() < deadline:
        second |= {m["Body"]: m for m in receive(client, main, attributes=True)}
    assert set(second) == {"poison", "order-0", "order-1", "order-2"}
    assert second["poison"]["Attributes"]["ApproximateReceiveCount"] == str(MAX_RECEIVES)
    good = [m for body, m in second.items() if body != "poison"]
    for message in good:
        client.change_message_visibility(QueueUrl=main, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=60)
    client.change_message_visibility(
        QueueUrl=main, ReceiptHandle=second["poison"]["ReceiptHandle"], VisibilityTimeout=0
    )

    # The next receive would be the third: past maxReceiveCount, ElasticMQ moves it to the DLQ instead.
    assert receive(client, main, wait=1) == [], "the poison message was delivered a third time"
    dead = receive(client, dlq, wait=5)
    assert [m["Body"] for m in dead] == ["poison"]

    # Processed: delete the good messages (and the dead letter) in batches.
    deleted = client.delete_message_batch(
        QueueUrl=main, Entries=[{"Id": f"d{i}", "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(good)]
    )
    assert len(deleted["Successful"]) == 3 and not deleted.get("Failed")
    deleted = client.delete_message_batch(
        QueueUrl=dlq, Entries=[{"Id": "dead", "ReceiptHandle": dead[0]["ReceiptHandle"]}]
    )
    assert [e["Id"] for e in deleted["Successful"]] == ["dead"]
    counts: list[Any] = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    for url in (main, dlq):
        left = client.get_queue_attributes(QueueUrl=url, AttributeNames=counts)["Attributes"]
        assert left == {name: "0" for name in counts}, url
