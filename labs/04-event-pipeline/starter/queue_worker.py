"""Lab 4, task 4: the same contract on an SQS queue (see the README).

usage: python queue_worker.py --queue Q --visibility SECONDS --max-receives N --base-delay SECONDS
                              --fulfilment URL --ledger L

boto3 reaches the platform's queue (ElasticMQ) through the standard variables AWS_ENDPOINT_URL_SQS,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_DEFAULT_REGION: `source .opslab/env` sets them,
and so does the grader. (It is called queue_worker.py, not queue.py: a queue.py here would hide the
standard library's queue module from boto3.)

What it must do, in short (the README says why and how it is checked):
- use queue Q (create it if it is missing) and a dead-letter queue ``Q-dlq``; give Q a RedrivePolicy
  naming Q-dlq with maxReceiveCount --max-receives, so the queue dead-letters what keeps failing;
- receive with long polling, with --visibility as the visibility timeout; capture each order (the
  message body) through fulfilment.Fulfilment with the order id as Idempotency-Key, and delete the
  message only after its capture;
- while you work, keep extending the visibility of every message you hold (the whole batch);
- a transient failure: make the message visible again after a backoff (ChangeMessageVisibility);
  a message that can never succeed: send it to Q-dlq at once with a message attribute error-class
  (malformed or rejected), then delete it;
- on SIGTERM finish the message in hand, hand the rest back and exit 0.
"""

from __future__ import annotations

import argparse
import os
import sys

from fulfilment import Fulfilment, Permanent, Transient  # noqa: F401 - you will need them


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Capture each order on an SQS queue exactly once.")
    parser.add_argument("--queue", default="orders")
    parser.add_argument("--visibility", type=int, default=10, help="visibility timeout, seconds")
    parser.add_argument("--max-receives", type=int, default=4, help="receives before the queue dead-letters")
    parser.add_argument("--base-delay", type=float, default=1.0, help="first retry delay, seconds")
    parser.add_argument("--fulfilment", default=os.environ.get("FULFILMENT_URL", "http://127.0.0.1:18080"))
    parser.add_argument("--ledger", default=os.environ.get("FULFILMENT_LEDGER", ""))
    parser.parse_args(argv)
    # TODO (task 4): the queues and the RedrivePolicy, the receive loop, the captures, the deletes after
    # them, the visibility heartbeat, the backoff and the dead letters.
    print("queue_worker.py: not written yet (lab 4, task 4)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
