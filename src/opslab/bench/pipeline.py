"""`make bench-pipeline`: lab 4's reference processor (solutions/04-event-pipeline/processor.py)
against the real Kafka and the shop's fulfilment API, on a platform of its own.

Three measures per run, each on a topic, consumer group and ledger of its own:
  - throughput on a pre-filled topic: the processor against a plain consumer that only reads, and
    against a consumer that does the same captures with no guarantees (no commits, no retries);
    each counted from its first to its last message, so start-up and group joins are left out;
  - end-to-end latency (order produced -> capture in the ledger) at each offered rate, p50 and p99,
    and whether the processor kept up (all captured within the drain limit);
  - crashes: 5 kill -9 of the processor mid-stream, each followed by a restart; lost and doubly
    captured orders at the end.
Medians of the runs go into docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from opslab.bench.platform import bench_settings, make_platform
from opslab.bench.report import Measure, report_measures
from opslab.primitives.readiness import wait_for
from opslab.runtime.endpoints import endpoint_environment
from opslab.shop import contract
from opslab.shop.topology import PRODUCTS

PARTITIONS = 4
KILLS = 5


def quiet(_: object) -> None:
    """librdkafka's log lines stay out of the report."""


def order(rng: random.Random) -> dict[str, Any]:
    items = {sku: rng.randint(1, 3) for sku in rng.sample(PRODUCTS, rng.randint(1, 3))}
    return contract.new_order(f"ord-{rng.getrandbits(48):012x}", f"user-{rng.randint(1, 500)}", items, time.time())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


@dataclass
class Bench:
    """One run's Kafka, shop and reference processor."""

    kafka: str
    shop: str
    processor: Path
    work: Path
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    def __post_init__(self) -> None:
        common: dict[str, Any] = {"bootstrap.servers": self.kafka, "logger": quiet}
        self.admin = AdminClient(common)
        self.producer = Producer({**common, "linger.ms": 5})
        self.http = httpx.Client(base_url=self.shop, timeout=10)

    def topic(self, name: str) -> str:
        topic = f"bench-{uuid.uuid4().hex[:6]}-{name}"
        for future in self.admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
            future.result(30)
        return topic

    def produce(self, topic: str, count: int, rate: float | None = None) -> dict[str, float]:
        """``count`` orders, at ``rate`` per second when given; their ids and produce times."""
        sent: dict[str, float] = {}
        began = time.monotonic()
        for index in range(count):
            if rate:
                ahead = began + index / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            body = order(self.rng)
            sent[body["order_id"]] = body["ts"]
            while True:
                try:
                    self.producer.produce(topic, json.dumps(body).encode(), key=body["order_id"].encode())
                    break
                except BufferError:
                    self.producer.poll(0.05)
            self.producer.poll(0)
        if self.producer.flush(60):
            raise RuntimeError("Kafka did not take the bench's orders within 60 s")
        return sent

    def captures(self, ledger: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        after = 0
        while True:
            page = self.http.get("/fulfilment/ledger", params={"after": after, "limit": 10_000},
                                 headers={"X-Ledger": ledger}).json()  # fmt: skip
            found += page["captures"]
            if not page["more"]:
                return found
            after = page["next_after"]

    def captured(self, ledger: str) -> int:
        return int(self.http.get("/fulfilment/ledger/summary", headers={"X-Ledger": ledger}).json()["orders"])

    def start(self, topic: str, ledger: str) -> subprocess.Popen[bytes]:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        log = (self.work / f"{ledger}.log").open("ab")
        return subprocess.Popen(
            [sys.executable, str(self.processor), "--bootstrap", self.kafka, "--topic", topic, "--group",
             f"{topic}-processor", "--fulfilment", self.shop, "--ledger", ledger, "--metrics-port", str(port)],
            cwd=self.processor.parent, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    @staticmethod
    def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def drop(self, ledger: str) -> None:
        self.http.delete("/fulfilment/ledger", headers={"X-Ledger": ledger})

    # ------------------------------------------------------------------ the measures

    def read_rate(self, topic: str, count: int, capture_to: str | None = None) -> float:
        """Messages per second of a consumer that reads (and, given a ledger, captures) each one."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.kafka,
            "group.id": f"{topic}-{uuid.uuid4().hex[:4]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "logger": quiet,
        }
        consumer = Consumer(config)  # fmt: skip
        consumer.subscribe([topic])
        seen, first, deadline = 0, 0.0, time.monotonic() + 300
        try:
            while seen < count and time.monotonic() < deadline:
                for message in consumer.consume(num_messages=500, timeout=1):
                    if message.error():
                        continue
                    if capture_to:
                        headers = {"X-Ledger": capture_to, "Content-Type": "application/json"}
                        self.http.post("/fulfilment/capture", content=message.value(), headers=headers)
                    seen += 1
                    if seen == 1:
                        first = time.monotonic()
        finally:
            consumer.close()
        return (seen - 1) / max(time.monotonic() - first, 1e-9)

    def processor_rate(self, topic: str, count: int) -> float:
        ledger = f"bench-{uuid.uuid4().hex[:6]}"
        proc = self.start(topic, ledger)
        try:
            if not wait_for(lambda: self.captured(ledger) >= count, 600, interval=0.5):
                raise RuntimeError(f"the processor captured {self.captured(ledger)} of {count} orders in 600 s")
        finally:
            self.stop(proc)
        times = sorted(c["captured_at"] for c in self.captures(ledger))
        self.drop(ledger)
        return (len(times) - 1) / max(times[-1] - times[0], 1e-9)

    def throughput(self, count: int) -> dict[str, float]:
        topic = self.topic("prefilled")
        self.produce(topic, count)
        plain = self.read_rate(topic, count)
        ledger = f"bench-{uuid.uuid4().hex[:6]}"
        capturing = self.read_rate(topic, count, capture_to=ledger)
        self.drop(ledger)
        processor = self.processor_rate(topic, count)
        return {"plain": plain, "capturing": capturing, "processor": processor}

    def latency(self, rate: float, seconds: float, drain: float) -> dict[str, float]:
        topic, ledger = self.topic(f"rate{int(rate)}"), f"bench-{uuid.uuid4().hex[:6]}"
        proc = self.start(topic, ledger)
        try:
            group = f"{topic}-processor"
            wait_for(lambda: self.assigned(group), 60, interval=0.5)
            sent = self.produce(topic, int(rate * seconds), rate=rate)
            wait_for(lambda: self.captured(ledger) >= len(sent), drain, interval=0.5)
        finally:
            self.stop(proc)
        lags = [c["captured_at"] - sent[c["order_id"]] for c in self.captures(ledger) if c["order_id"] in sent]
        self.drop(ledger)
        return {"p50": percentile(lags, 0.5) * 1000, "p99": percentile(lags, 0.99) * 1000,
                "kept_up": float(len(lags) == len(sent)), "captured": len(lags) / len(sent)}  # fmt: skip

    def assigned(self, group: str) -> bool:
        try:
            described = self.admin.describe_consumer_groups([group])[group].result(10)
        except Exception:  # not described yet
            return False
        return any(m.assignment.topic_partitions for m in described.members)

    def crashes(self, count: int) -> dict[str, float]:
        topic, ledger = self.topic("crashes"), f"bench-{uuid.uuid4().hex[:6]}"
        sent = self.produce(topic, count)
        proc = self.start(topic, ledger)
        try:
            for kill in range(1, KILLS + 1):
                mark = count * kill // (KILLS + 2)

                def reached(at: int = mark) -> bool:
                    return self.captured(ledger) >= at

                if not wait_for(reached, 120, interval=0.2):
                    raise RuntimeError(f"the processor stalled below {mark} captures")
                self.stop(proc, signal.SIGKILL)
                proc = self.start(topic, ledger)
            wait_for(lambda: self.captured(ledger) >= count, 300, interval=0.5)
        finally:
            self.stop(proc)
        counts: dict[str, int] = {}
        for capture in self.captures(ledger):
            counts[capture["order_id"]] = counts.get(capture["order_id"], 0) + 1
        self.drop(ledger)
        return {"lost": float(len(set(sent) - set(counts))), "doubled": float(sum(1 for n in counts.values() if n > 1))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of every measure (default 3)")
    parser.add_argument("--orders", type=int, default=2000, help="orders on the pre-filled topic (default 2000)")
    parser.add_argument("--rates", default="50,1000", help="offered rates for the latency measure (default 50,1000)")
    parser.add_argument("--seconds", type=float, default=10, help="seconds each rate is offered (default 10)")
    parser.add_argument("--no-record", action="store_true", help="print only; leave docs/performance.md alone")
    args = parser.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",")]

    settings = bench_settings(nodes=3)
    root = Path(settings.paths.root)
    print(f"bench-pipeline: {os.cpu_count()} cores, state {settings.paths.state}")
    platform = make_platform(settings)
    platform.down(purge=True)
    results: list[dict[str, float]] = []
    try:
        platform.up()
        env = endpoint_environment(settings)
        with tempfile.TemporaryDirectory(prefix="opslab-bench-pipeline-") as tmp:
            bench = Bench(env["OPSLAB_KAFKA_BOOTSTRAP"], env["OPSLAB_SHOP_URL"],
                          root / "solutions" / "04-event-pipeline" / "processor.py", Path(tmp))  # fmt: skip
            for run in range(args.runs):
                found: dict[str, float] = {}
                found.update({f"rate_{k}": v for k, v in bench.throughput(args.orders).items()})
                for rate in rates:
                    drain = max(60.0, args.seconds * 3)
                    found.update({f"{k}@{rate:g}": v for k, v in bench.latency(rate, args.seconds, drain).items()})
                found.update(bench.crashes(args.orders))
                results.append(found)
                print(f"  run {run + 1}: " + ", ".join(f"{k} {v:.1f}" for k, v in found.items()))
    finally:
        platform.down(purge=True)

    med = {key: statistics.median(r[key] for r in results) for key in results[0]}
    rows: list[Measure] = [
        ("processor throughput", f"{med['rate_processor']:.0f} orders/s", "-",
         ", ".join(f"{r['rate_processor']:.0f}" for r in results)),
        ("plain consumer (reads only)", f"{med['rate_plain']:.0f} msg/s", "-",
         ", ".join(f"{r['rate_plain']:.0f}" for r in results)),
        ("processor / plain consumer", f"{100 * med['rate_processor'] / med['rate_plain']:.2g} %", ">= 50 %", ""),
        ("consumer that captures, no guarantees", f"{med['rate_capturing']:.0f} orders/s", "-",
         ", ".join(f"{r['rate_capturing']:.0f}" for r in results)),
        ("processor / capturing consumer", f"{100 * med['rate_processor'] / med['rate_capturing']:.0f} %", "-", ""),
    ]  # fmt: skip
    for rate in rates:
        kept = sum(r[f"kept_up@{rate:g}"] for r in results)
        rows.append((f"latency p50 / p99 at {rate:g} orders/s", f"{med[f'p50@{rate:g}']:.0f} / "
                     f"{med[f'p99@{rate:g}']:.0f} ms", "p99 <= 100 ms" if rate == 1000 else "-",
                     f"kept up in {kept:.0f} of {len(results)} runs; captured "
                     + ", ".join(f"{100 * r[f'captured@{rate:g}']:.0f} %" for r in results)))  # fmt: skip
    lost, doubled = sum(r["lost"] for r in results), sum(r["doubled"] for r in results)
    rows.append((f"lost / doubled over {KILLS} kill -9", f"{lost:.0f} / {doubled:.0f}", "0 / 0",
                 f"{len(results)} runs of {args.orders} orders"))  # fmt: skip
    document = None if args.no_record else root / "docs" / "performance.md"
    what = f"{args.orders} orders on {PARTITIONS} partitions, each rate offered for {args.seconds:g} s."
    report_measures(document, "bench-pipeline", what, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
