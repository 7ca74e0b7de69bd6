"""`make bench-shop`: sustained requests per second through the shop simulator under locust, and
the simulator's own added latency (beyond the latency its model asks for).

Runs its own platform (state in .opslab/bench/, ports shifted by 3000). Each run drives the
shop's usual route mix with locust (FastHttpUser, one process) for a fixed time, then reads:
  - throughput and failures from locust's stats,
  - the simulator's added latency from its histogram shop_simulator_overhead_seconds (p50, p99),
  - the platform's memory (sum of RSS) under that load.
Medians of the runs go into docs/performance.md.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from opslab.bench.platform import bench_settings, make_platform, platform_rss
from opslab.bench.report import Measure, report_measures
from opslab.scenarios.load import LoadRun
from opslab.scenarios.model import Load

TARGET_RPS = 1000


def overhead_buckets(shop_url: str) -> dict[float, float]:
    """Cumulative counts of shop_simulator_overhead_seconds by upper bound."""
    buckets = {}
    for line in httpx.get(f"{shop_url}/metrics", timeout=10).text.splitlines():
        if line.startswith("shop_simulator_overhead_seconds_bucket"):
            bound = line.split('le="')[1].split('"')[0]
            buckets[float("inf") if bound == "+Inf" else float(bound)] = float(line.rsplit(" ", 1)[1])
    return buckets


def quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """The q-quantile of the observations between two histogram snapshots (linear in the bucket)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1]
    if total <= 0:
        return float("nan")
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / max(count - lower_count, 1e-9)
        lower_bound, lower_count = bound, count
    return bounds[-2]


def one_run(shop_url: str, root: Path, rps: float, seconds: float, platform_rss_of: object) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="opslab-bench-shop-") as tmp:
        run_dir = Path(tmp)
        before = overhead_buckets(shop_url)
        locustfile = root / "scenarios" / "load" / "locustfile.py"
        load = LoadRun(locustfile, Load("steady", rps, seconds), shop_url, run_dir, user_rps=10)
        load.start()
        time.sleep(seconds * 0.75)
        rss = platform_rss_of()  # type: ignore[operator]
        assert load.proc is not None
        locust_rss = psutil.Process(load.proc.pid).memory_info().rss
        load.proc.wait(seconds + 60)
        after = overhead_buckets(shop_url)
        with (run_dir / "locust_stats.csv").open() as handle:
            aggregated = next(row for row in csv.DictReader(handle) if row["Name"] == "Aggregated")
    return {
        "rps": float(aggregated["Requests/s"]),
        "failures": float(aggregated["Failure Count"]) / max(float(aggregated["Request Count"]), 1.0),
        "client_p99_ms": float(aggregated["99%"]),
        "overhead_p50_ms": quantile(before, after, 0.50) * 1000,
        "overhead_p99_ms": quantile(before, after, 0.99) * 1000,
        "platform_rss_gib": rss / 2**30,
        "locust_rss_gib": locust_rss / 2**30,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rps", type=float, default=1100, help="offered load (default 1100 req/s)")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args(argv)

    settings = bench_settings(nodes=3)
    platform = make_platform(settings)
    platform.down(purge=True)
    shop_url = f"http://127.0.0.1:{settings.ports.shop}"
    print(f"bench-shop: {os.cpu_count()} cores, offered {args.rps:g} req/s for {args.seconds:g} s, {args.runs} runs")
    results = []
    try:
        platform.up()
        time.sleep(10)
        for run in range(args.runs):
            result = one_run(shop_url, settings.paths.root, args.rps, args.seconds, lambda: platform_rss(platform))
            results.append(result)
            print(
                f"  run {run + 1}: {result['rps']:.0f} req/s, failures {result['failures']:.2%}, "
                f"added latency p50 {result['overhead_p50_ms']:.2f} ms p99 {result['overhead_p99_ms']:.2f} ms, "
                f"client p99 {result['client_p99_ms']:.0f} ms, platform RSS {result['platform_rss_gib']:.2f} GiB"
            )
    finally:
        platform.down(purge=True)

    def med(key: str) -> float:
        return statistics.median(r[key] for r in results)

    def runs(key: str, fmt: str) -> str:
        return ", ".join(format(r[key], fmt) for r in results)

    rows: list[Measure] = [
        ("sustained throughput", f"{med('rps'):.0f} req/s", f">= {TARGET_RPS} req/s", runs("rps", ".0f")),
        ("failed requests", f"{med('failures'):.2%}", "-", runs("failures", ".2%")),
        (
            "simulator's added latency, p99",
            f"{med('overhead_p99_ms'):.2f} ms",
            "<= 5 ms",
            runs("overhead_p99_ms", ".2f"),
        ),
        ("simulator's added latency, p50", f"{med('overhead_p50_ms'):.2f} ms", "-", runs("overhead_p50_ms", ".2f")),
        ("client-side p99 (locust)", f"{med('client_p99_ms'):.0f} ms", "-", runs("client_p99_ms", ".0f")),
        (
            "platform memory under load (RSS)",
            f"{med('platform_rss_gib'):.2f} GiB",
            "-",
            runs("platform_rss_gib", ".2f"),
        ),
        ("locust memory", f"{med('locust_rss_gib'):.2f} GiB", "-", runs("locust_rss_gib", ".2f")),
    ]
    document = None if args.no_record else settings.paths.root / "docs" / "performance.md"
    what = (f"locust (one process) and the whole platform on the same machine, offered {args.rps:g} req/s of "
            f"the shop's usual route mix for {args.seconds:g} s per run.")  # fmt: skip
    report_measures(document, "bench-shop", what, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
