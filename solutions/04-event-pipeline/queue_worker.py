"""Lab 4 reference solution: the same contract on an SQS queue (the platform's ElasticMQ).

(Named queue_worker.py, not queue.py: a file called queue.py next to it would shadow the standard
library module that boto3 and urllib3 import.)

usage: python queue_worker.py [--queue orders] [--visibility SECONDS] [--max-receives N]

- The queue and its dead-letter queue ``<queue>-dlq`` are created if missing, with a RedrivePolicy:
  a message received --max-receives times without being deleted moves to the DLQ by itself.
- Long polling (WaitTimeSeconds) and batches of up to 10: few empty receives, few round trips.
- A message is deleted only after its capture succeeded. While it is being worked on, a heartbeat
  extends its visibility timeout, so slow work is not handed to a second consumer.
- A transient failure makes the message visible again after a backoff that grows with its receive
  count; a permanent one sends it to the DLQ at once (with the reason) and deletes it.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import threading
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from fulfilment import Fulfilment, Permanent, Transient


class Heartbeat:
    """Keeps one message invisible to other consumers while it is worked on."""

    def __init__(self, sqs: Any, queue_url: str, receipt: str, visibility: int) -> None:
        self.sqs, self.queue_url, self.receipt, self.visibility = sqs, queue_url, receipt, visibility
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.beat, daemon=True)

    def beat(self) -> None:
        while not self.done.wait(self.visibility / 3):
            try:
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url, ReceiptHandle=self.receipt, VisibilityTimeout=self.visibility
                )
            except (BotoCoreError, ClientError):
                return  # the message is gone or its receipt expired: nothing left to keep

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.done.set()
        self.thread.join()


class QueueWorker:
    def __init__(self, args: argparse.Namespace) -> None:
        self.sqs = boto3.client("sqs")
        self.visibility, self.max_receives, self.base_delay = args.visibility, args.max_receives, args.base_delay
        self.fulfilment = Fulfilment(args.fulfilment, args.ledger)
        self.dlq_url = self.ensure(f"{args.queue}-dlq", {})
        dlq_arn = self.sqs.get_queue_attributes(QueueUrl=self.dlq_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(args.max_receives)})
        self.queue_url = self.ensure(args.queue, {"RedrivePolicy": redrive, "VisibilityTimeout": str(args.visibility)})
        self.stopping = False

    def ensure(self, name: str, attributes: dict[str, str]) -> str:
        url = self.sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        if attributes:  # an existing queue keeps its old attributes unless they are set again
            self.sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
        return str(url)

    def dead_letter(self, message: dict[str, Any], error_class: str, error: str) -> None:
        self.sqs.send_message(
            QueueUrl=self.dlq_url, MessageBody=message["Body"],
            MessageAttributes={
                "error-class": {"DataType": "String", "StringValue": error_class},
                "error-message": {"DataType": "String", "StringValue": error[:500] or "-"},
                "receives": {"DataType": "Number", "StringValue": message["Attributes"]["ApproximateReceiveCount"]},
            },
        )  # fmt: skip

    def handle(self, message: dict[str, Any]) -> bool:
        """Work on one message; True when it may be deleted."""
        receives = int(message["Attributes"]["ApproximateReceiveCount"])
        try:
            order = json.loads(message["Body"])
            if not isinstance(order, dict) or not isinstance(order.get("order_id"), str):
                raise Permanent("not an order: no order_id")
        except (ValueError, Permanent) as exc:
            self.dead_letter(message, "malformed", str(exc))
            return True
        try:
            with Heartbeat(self.sqs, self.queue_url, message["ReceiptHandle"], self.visibility):
                self.fulfilment.capture(order, idempotency_key=order["order_id"])
        except Permanent as exc:
            self.dead_letter(message, "rejected", str(exc))
            return True
        except Transient:
            # Visible again after a growing backoff; after --max-receives the queue dead-letters it.
            delay = min(self.base_delay * 2 ** (receives - 1), 300) * random.uniform(0.8, 1.2)
            self.sqs.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=round(delay)
            )
            return False
        return True

    def run(self) -> None:
        while not self.stopping:
            answer = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=2,
                AttributeNames=["ApproximateReceiveCount"], VisibilityTimeout=self.visibility,
            )  # fmt: skip
            done = []
            for message in answer.get("Messages", []):
                if self.stopping:
                    break  # not deleted: visible again after its timeout, for another consumer
                if self.handle(message):
                    done.append({"Id": str(len(done)), "ReceiptHandle": message["ReceiptHandle"]})
            if done:
                self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=done)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Capture each order on an SQS queue exactly once.")
    parser.add_argument("--queue", default="orders")
    parser.add_argument("--visibility", type=int, default=10, help="visibility timeout, seconds")
    parser.add_argument("--max-receives", type=int, default=4, help="receives before the queue dead-letters")
    parser.add_argument("--base-delay", type=float, default=1.0, help="first retry delay, seconds")
    parser.add_argument("--fulfilment", default=None, help="fulfilment API URL (default: FULFILMENT_URL)")
    parser.add_argument("--ledger", default=None, help="fulfilment ledger (default: FULFILMENT_LEDGER)")
    args = parser.parse_args(argv)
    if args.visibility < 3 or args.max_receives < 1 or args.base_delay <= 0:
        parser.error("--visibility must be >= 3, --max-receives >= 1, --base-delay > 0")
    try:
        worker = QueueWorker(args)
    except (BotoCoreError, ClientError) as exc:
        print(f"error: cannot reach the queue ({exc}); is the platform up and .opslab/env sourced?",
              file=sys.stderr)  # fmt: skip
        return 1

    def stop(_signum: int, _frame: Any) -> None:
        worker.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
