"""Lab 4 reference solution: the same contract on an SQS queue (the platform's ElasticMQ).

(Named queue_worker.py, not queue.py: a file called queue.py next to it would shadow the standard
library module that boto3 and urllib3 import.)

usage: python queue_worker.py [--queue orders] [--visibility SECONDS] [--max-receives N] [--base-delay S]

boto3 finds the queue through the standard variables (AWS_ENDPOINT_URL_SQS, the credentials and
the region), which .opslab/env and the grader set.

- The dead-letter queue ``<queue>-dlq`` is created if missing, and the queue gets a RedrivePolicy
  naming it: a message received --max-receives times without being deleted moves there by itself.
- Long polling (WaitTimeSeconds) and batches of up to 10: few empty receives, few round trips.
- A message is deleted only after its capture succeeded. Every message this worker holds (the one
  at hand and the rest of its batch) has its visibility extended by a heartbeat until it is done
  with it, so slow work is never handed to a second consumer.
- A transient failure makes the message visible again after a backoff that grows with its receive
  count; a permanent one sends it to the DLQ at once (with the reason) and deletes it.
- On SIGTERM it finishes the message at hand, hands the rest of its batch back (visible at once)
  and exits 0.
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


class Held:
    """The messages this worker holds, kept invisible to other consumers by a heartbeat."""

    def __init__(self, sqs: Any, queue_url: str, visibility: int) -> None:
        self.sqs, self.queue_url, self.visibility = sqs, queue_url, visibility
        self.receipts: dict[str, str] = {}
        """Message id -> receipt handle, for every message received and not yet let go."""
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.beat, daemon=True)
        self.thread.start()

    def hold(self, messages: list[dict[str, Any]]) -> None:
        with self.lock:
            self.receipts.update({m["MessageId"]: m["ReceiptHandle"] for m in messages})

    def let_go(self, message: dict[str, Any], visible_in: int | None = None) -> None:
        """Stop extending ``message``; with ``visible_in``, make it visible again after that many seconds."""
        with self.lock:  # under the lock: a heartbeat cannot extend it again after this
            self.receipts.pop(message["MessageId"], None)
            if visible_in is not None:
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=visible_in
                )

    def extend(self, visibility: int) -> None:
        with self.lock:
            entries = [{"Id": str(i), "ReceiptHandle": r, "VisibilityTimeout": visibility}
                       for i, r in enumerate(self.receipts.values())]  # fmt: skip
            for start in range(0, len(entries), 10):  # a batch call takes at most 10
                try:
                    chunk = entries[start : start + 10]
                    self.sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=chunk)
                except (BotoCoreError, ClientError) as exc:
                    print(f"cannot extend visibility: {exc}", file=sys.stderr)

    def beat(self) -> None:
        while not self.stopped.wait(self.visibility / 3):
            self.extend(self.visibility)

    def stop(self) -> None:
        """Hand back what is still held (visible to another consumer at once) and stop beating."""
        self.stopped.set()
        self.thread.join()
        self.extend(0)


class QueueWorker:
    def __init__(self, args: argparse.Namespace) -> None:
        self.sqs = boto3.client("sqs")
        self.visibility, self.max_receives, self.base_delay = args.visibility, args.max_receives, args.base_delay
        self.fulfilment = Fulfilment(args.fulfilment, args.ledger)
        self.queue_url = self.sqs.create_queue(QueueName=args.queue)["QueueUrl"]  # the existing one, if any
        self.dlq_url = self.sqs.create_queue(QueueName=f"{args.queue}-dlq")["QueueUrl"]
        dlq_arn = self.sqs.get_queue_attributes(QueueUrl=self.dlq_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(args.max_receives)})
        self.sqs.set_queue_attributes(QueueUrl=self.queue_url, Attributes={"RedrivePolicy": redrive})
        self.held = Held(self.sqs, self.queue_url, self.visibility)
        self.stopping = False

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
            self.fulfilment.capture(order, idempotency_key=order["order_id"])
        except Permanent as exc:
            self.dead_letter(message, "rejected", str(exc))
            return True
        except Transient:
            # Visible again after a growing backoff; after --max-receives the queue dead-letters it.
            delay = min(self.base_delay * 2 ** (receives - 1), 300) * random.uniform(0.8, 1.2)
            self.held.let_go(message, visible_in=round(delay))
            return False
        return True

    def run(self) -> None:
        while not self.stopping:
            answer = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=2,
                AttributeNames=["ApproximateReceiveCount"], VisibilityTimeout=self.visibility,
            )  # fmt: skip
            messages = answer.get("Messages", [])
            self.held.hold(messages)
            done = []
            for message in messages:
                if self.stopping:
                    break  # the rest of the batch is handed back by held.stop()
                if self.handle(message):
                    done.append(message)  # still held (kept invisible) until the batch delete below
            if done:
                answer = self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)
                ])  # fmt: skip
                for failed in answer.get("Failed", []):  # its receipt expired: it comes back, a replay
                    print(f"cannot delete a message: {failed.get('Code')} {failed.get('Message')}", file=sys.stderr)
                for message in done:
                    self.held.let_go(message)
        self.held.stop()


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
