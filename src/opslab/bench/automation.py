"""`make bench-automation`: lab 5's reference API and workers (solutions/05-automation/) against the
real Redis and Prometheus, on a platform of its own.

Per run, with keys of the run's own:
  - acknowledgements: N webhook deliveries (one new alert each) from C concurrent clients, for
    C = 10 (what the grader checks) and C = 100; deliveries per second and p50 / p99 of the
    acknowledgement as the client sees it;
  - job throughput: N jobs (alerts no runbook fits, so no cluster work) from the first delivery to
    the last job finished, with one worker process of 4 threads.
Medians of the runs go into docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from opslab.agent.automation import REFERENCE, Backend
from opslab.bench.platform import bench_settings, fresh_platform
from opslab.bench.report import Measure, report_measures
from opslab.primitives.bursts import burst, post_request
from opslab.primitives.ports import free_port
from opslab.primitives.readiness import wait_for

WARM_UP = 400
"""Deliveries before each measure: a fresh API process answers its first few hundred slowly."""
SOLUTION = REFERENCE
"""What is measured unless --path names another copy (a learner's own work)."""


def payload(i: int, prefix: str) -> dict[str, Any]:
    alert = {
        "status": "firing",
        "labels": {"alertname": "BenchAlert", "service": f"svc-{i % 50}", "deployment": f"d-{i}", "namespace": "bench"},
        "annotations": {},
        "startsAt": "2026-12-01T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": f"{prefix}{i:08x}",
    }
    return {"version": "4", "groupKey": "bench", "truncatedAlerts": 0, "status": "firing", "receiver": "bench",
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "alerts": [alert]}  # fmt: skip


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Bench:
    def __init__(self, env: dict[str, str], work: Path, code: Path) -> None:
        self.backend = Backend(env, work, code, namespace="bench")

    def acknowledgements(self, run: int, count: int, clients: int, port: int) -> dict[str, float]:
        namespace = f"bench-{run}-ack{clients}"
        proc = self.backend.api(port, namespace)
        try:
            headers = self.backend.headers
            warm_up = [post_request("/alerts", payload(i, "w"), headers) for i in range(WARM_UP)]
            burst(port, warm_up, 10)
            batch = [post_request("/alerts", payload(i, "b"), headers) for i in range(count)]
            began = time.perf_counter()
            answered = burst(port, batch, clients)
            elapsed = time.perf_counter() - began
            seconds = [s for _, s in answered]
            refused = sum(code != 202 for code, _ in answered)
        finally:
            self.backend.stop(proc)
            self.backend.drop(namespace)
        p50, p99 = percentile(seconds, 0.5) * 1000, percentile(seconds, 0.99) * 1000
        return {"rate": count / elapsed, "p50": p50, "p99": p99, "refused": refused}

    def jobs(self, run: int, count: int, port: int) -> dict[str, float]:
        namespace = f"bench-{run}-jobs"
        self.backend.api(port, namespace)
        self.backend.workers(namespace)
        store = redis.Redis.from_url(self.backend.env["OPSLAB_REDIS_URL"])
        try:
            began = time.perf_counter()
            burst(port, [post_request("/alerts", payload(i, "j"), self.backend.headers) for i in range(count)], 10)

            def finished() -> bool:
                return int(store.hget(f"{namespace}:states", "escalated") or 0) >= count

            done = wait_for(finished, 120, interval=0.1)
            elapsed = time.perf_counter() - began
        finally:
            self.backend.stop()
            self.backend.drop(namespace)
            store.close()
        return {"jobs_rate": count / elapsed if done else 0.0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of every measure (default 3)")
    parser.add_argument("--deliveries", type=int, default=2000, help="deliveries per measure (default 2000)")
    parser.add_argument("--jobs", type=int, default=500, help="jobs for the throughput measure (default 500)")
    parser.add_argument("--path", type=Path, help="the API and workers to measure (default: the reference solution)")
    parser.add_argument("--no-record", action="store_true", help="print only; leave docs/performance.md alone")
    args = parser.parse_args(argv)

    settings = bench_settings(nodes=1)
    root = Path(settings.paths.root)
    code = (args.path or root / SOLUTION).resolve()
    if not (code / "api.py").is_file() or not (code / "workers.py").is_file():
        parser.error(f"{code} has no api.py and workers.py: give --path your lab 5 directory")
    if args.path:
        args.no_record = True  # docs/performance.md records the reference solution only
    print(f"bench-automation: {os.cpu_count()} cores, state {settings.paths.state}")
    results: list[dict[str, float]] = []
    with fresh_platform(settings) as env, tempfile.TemporaryDirectory(prefix="opslab-bench-automation-") as tmp:
        bench = Bench(env, Path(tmp), code)
        for run in range(args.runs):
            found: dict[str, float] = {}
            for clients in (10, 100):
                measured = bench.acknowledgements(run, args.deliveries, clients, free_port())
                found.update({f"{k}@{clients}": v for k, v in measured.items()})
            found.update(bench.jobs(run, args.jobs, free_port()))
            results.append(found)
            print(f"  run {run + 1}: " + ", ".join(f"{k} {v:.1f}" for k, v in found.items()))

    med = {key: statistics.median(r[key] for r in results) for key in results[0]}
    rows: list[Measure] = []
    for clients in (10, 100):
        refused = sum(r[f"refused@{clients}"] for r in results)
        rates = ", ".join(f"{r[f'rate@{clients}']:.0f}" for r in results)
        rows.append((f"webhook deliveries/s, {clients} clients", f"{med[f'rate@{clients}']:.0f}/s", "-",
                     f"{rates}; {refused:.0f} not 202"))  # fmt: skip
        rows.append((f"acknowledgement p50 / p99, {clients} clients",
                     f"{med[f'p50@{clients}']:.1f} / {med[f'p99@{clients}']:.1f} ms",
                     "p99 <= 50 ms" if clients == 10 else "-",
                     ", ".join(f"{r[f'p99@{clients}']:.0f}" for r in results)))  # fmt: skip
    rows.append(("job throughput (1 worker process, 4 threads)", f"{med['jobs_rate']:.0f} jobs/s", "-",
                 ", ".join(f"{r['jobs_rate']:.0f}" for r in results)))  # fmt: skip
    document = None if args.no_record else root / "docs" / "performance.md"
    what = (f"{args.deliveries} deliveries (one new alert each) per measure; {args.jobs} jobs that escalate "
            "(no cluster work) for the throughput.")  # fmt: skip
    report_measures(document, "bench-automation", what, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
