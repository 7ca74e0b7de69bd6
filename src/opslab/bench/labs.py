"""`make bench-labs`: how long grading each lab takes with the platform up.

Grades each lab's reference solution (the slowest path: every check runs to completion) on a
platform of its own (state in .opslab/bench/, ports shifted by 3000), several times, and records
the medians in docs/performance.md. Target: at most 90 s per lab.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from opslab.bench.platform import bench_settings, make_platform
from opslab.bench.report import record_section
from opslab.grading.labs import all_labs
from opslab.grading.runner import grade

TARGET_SECONDS = 90


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args(argv)
    settings = bench_settings(nodes=3)
    platform = make_platform(settings)
    platform.down(purge=True)
    labs = all_labs(settings.paths.root)
    times: dict[str, list[float]] = {lab.name: [] for lab in labs}
    scores: dict[str, str] = {}
    print(f"bench-labs: {os.cpu_count()} cores, {len(labs)} labs, {args.runs} runs each")
    try:
        platform.up()
        with tempfile.TemporaryDirectory(prefix="opslab-bench-labs-") as tmp:
            for run in range(args.runs):
                for lab in labs:
                    began = time.monotonic()
                    result, _ = grade(
                        lab, settings, path=settings.paths.root / "solutions" / lab.name,
                        runs_root=Path(tmp) / f"run{run}", record=False,
                    )  # fmt: skip
                    times[lab.name].append(time.monotonic() - began)
                    scores[lab.name] = f"{result.earned}/{result.total}"
                    took = times[lab.name][-1]
                    print(f"  run {run + 1}: {lab.name:<20} {took:6.1f} s  ({scores[lab.name]})", flush=True)
                    for failed in (c for c in result.checks if not c.passed):
                        print(f"      {failed.status}: {failed.id}: {failed.reason}", flush=True)
    finally:
        platform.down(purge=True)
    rows = [
        (lab.name, statistics.median(times[lab.name]), scores[lab.name], times[lab.name])
        for lab in labs
        if times[lab.name]
    ]
    print()
    for name, median, score, _ in rows:
        print(f"  {name:<20} median {median:6.1f} s  target <= {TARGET_SECONDS} s  (solution scored {score})")
    if not args.no_record:
        table = ["| lab | grading time (median) | target | runs | solution score |", "|---|---|---|---|---|"]
        table += [
            f"| {name} | {median:.0f} s | <= {TARGET_SECONDS} s | {', '.join(f'{t:.0f}' for t in runs)} | {score} |"
            for name, median, score, runs in rows
        ]
        record_section(
            settings.paths.root / "docs" / "performance.md",
            "bench-labs",
            f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores: `opslab lab check N --path "
            "solutions/NN-topic` with the platform up (every check runs to completion).",
            "\n".join(table),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
