"""Lab 4 reference solution: the same contract on Redis Streams.

usage: python streams.py [--redis URL] [--stream orders] [--group fulfilment] [--consumer NAME]
                         [--claim-after SECONDS] [--max-deliveries N] [--maxlen N]

- XREADGROUP gives each entry to one consumer of the group; the entry stays in the group's
  pending entries list (PEL) until XACK, which comes only after the capture succeeded.
- A consumer that dies leaves its entries pending: every loop, XAUTOCLAIM takes over entries idle
  for longer than --claim-after seconds (a crashed peer's, or our own that failed transiently:
  the claim delay is the retry backoff).
- An entry delivered --max-deliveries times (XPENDING's delivery counter), or refused for good,
  goes to ``<stream>:dead`` with the reason and is acknowledged.
- The stream is trimmed (approximately) to --maxlen entries so it cannot grow without bound.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import time
from typing import Any

import redis
from fulfilment import Fulfilment, Permanent, Transient


class StreamWorker:
    def __init__(self, args: argparse.Namespace) -> None:
        self.r = redis.Redis.from_url(args.redis)
        self.stream, self.group, self.name = args.stream, args.group, args.consumer
        self.dead = f"{args.stream}:dead"
        self.claim_after_ms = int(args.claim_after * 1000)
        self.max_deliveries, self.maxlen = args.max_deliveries, args.maxlen
        self.fulfilment = Fulfilment(args.fulfilment, args.ledger)
        self.stopping = False

    def ensure_group(self) -> None:
        try:
            self.r.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def deliveries(self, entry_id: bytes) -> int:
        pending = self.r.xpending_range(self.stream, self.group, min=entry_id, max=entry_id, count=1)
        return int(pending[0]["times_delivered"]) if pending else 1

    def bury(self, entry_id: bytes, fields: dict[bytes, bytes], error_class: str, error: str, deliveries: int) -> None:
        """Move an entry to the dead-letter stream and acknowledge it, atomically."""
        record: dict[Any, Any] = {
            **fields, "error-class": error_class, "error-message": error[:500],
            "deliveries": deliveries, "original-id": entry_id, "original-stream": self.stream,
        }  # fmt: skip
        pipe = self.r.pipeline(transaction=True)
        pipe.xadd(self.dead, record, maxlen=self.maxlen, approximate=True)
        pipe.xack(self.stream, self.group, entry_id)
        pipe.execute()

    def handle(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        deliveries = self.deliveries(entry_id)
        try:
            order = json.loads(fields.get(b"order", b""))
            if not isinstance(order, dict) or not isinstance(order.get("order_id"), str):
                raise Permanent("not an order: no order_id")
        except (ValueError, Permanent) as exc:
            self.bury(entry_id, fields, "malformed", str(exc), deliveries)
            return
        try:
            self.fulfilment.capture(order, idempotency_key=order["order_id"])
        except Permanent as exc:
            self.bury(entry_id, fields, "rejected", str(exc), deliveries)
            return
        except Transient as exc:
            if deliveries >= self.max_deliveries:
                self.bury(entry_id, fields, "retries-exhausted", str(exc), deliveries)
            return  # left pending: reclaimed (and retried) once idle for --claim-after
        self.r.xack(self.stream, self.group, entry_id)

    def run(self) -> None:
        self.ensure_group()
        last_trim = 0.0
        while not self.stopping:
            _, claimed, _ = self.r.xautoclaim(
                self.stream, self.group, self.name, min_idle_time=self.claim_after_ms, start_id="0-0", count=100
            )
            fresh = self.r.xreadgroup(self.group, self.name, {self.stream: ">"}, count=100, block=500)
            entries = list(claimed) + [e for _, batch in fresh for e in batch]
            for entry_id, fields in entries:
                if fields:  # a claimed entry that was trimmed away has no fields
                    self.handle(entry_id, fields)
                else:
                    self.r.xack(self.stream, self.group, entry_id)
                if self.stopping:
                    break  # the rest stay pending: another consumer claims them
            if time.monotonic() - last_trim > 5:
                self.r.xtrim(self.stream, maxlen=self.maxlen, approximate=True)
                last_trim = time.monotonic()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Capture each order on a Redis stream exactly once.")
    parser.add_argument("--redis", default=os.environ.get("OPSLAB_REDIS_URL", "redis://127.0.0.1:16379/0"))
    parser.add_argument("--stream", default="orders")
    parser.add_argument("--group", default="fulfilment")
    parser.add_argument("--consumer", default=f"{socket.gethostname()}-{os.getpid()}")
    parser.add_argument("--claim-after", type=float, default=5.0, help="reclaim entries idle this long (s)")
    parser.add_argument("--max-deliveries", type=int, default=4)
    parser.add_argument("--maxlen", type=int, default=100_000)
    parser.add_argument("--fulfilment", default=os.environ.get("FULFILMENT_URL", "http://127.0.0.1:18080"))
    parser.add_argument("--ledger", default=os.environ.get("FULFILMENT_LEDGER", ""))
    args = parser.parse_args(argv)
    if args.claim_after <= 0 or args.max_deliveries < 1 or args.maxlen < 1:
        parser.error("--claim-after must be > 0, --max-deliveries and --maxlen >= 1")
    worker = StreamWorker(args)

    def stop(_signum: int, _frame: Any) -> None:
        worker.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        worker.run()
    except redis.ConnectionError as exc:
        print(f"error: cannot reach Redis at {args.redis} ({exc}); is the platform up?", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
