"""`make bench-setup`: a cold `opslab setup`, per component, as on a fresh machine.

Every component is built or fetched into a temporary cache with an empty Go build cache (so Go
compiles everything), and OpenTofu is built even if a terraform binary is on PATH. Downloads are
not repeated: Go's module cache, Maven's repository and apt's archives stay warm, so the figures
are compile and assembly time; a fresh machine adds its download time. Medians go into
docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from opslab import settings as settings_module
from opslab.bench.report import record_section
from opslab.toolchain.resolve import Toolchain
from opslab.toolchain.setup import StepResult, run_setup
from opslab.toolchain.versions import load_versions


class Printer:
    def started(self, component: object, reason: str) -> None:
        pass

    def progress(self, component: object, text: str) -> None:
        pass

    def finished(self, result: StepResult) -> None:
        print(f"  {result.component:<22} {result.seconds:7.1f} s", flush=True)


def cold_run(root: Path, only: list[str] | None = None) -> dict[str, float]:
    versions = load_versions(root / "platform" / "versions.toml")
    with tempfile.TemporaryDirectory(prefix="opslab-cold-") as tmp:
        cache = Path(tmp) / "cache"
        os.environ["GOCACHE"] = str(Path(tmp) / "gocache")
        toolchain = Toolchain(versions, cache, which=lambda name: None if name == "terraform" else shutil.which(name))
        try:
            results = run_setup(toolchain, root, Path(tmp) / "logs", Printer(), only=only)
        finally:
            os.environ.pop("GOCACHE", None)
            make_deletable(Path(tmp))
    return {r.component: r.seconds for r in results}


def make_deletable(tree: Path) -> None:
    """Go marks its cache read-only; make it deletable."""
    for path in tree.rglob("*"):
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o200)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="cold runs (default 1; each takes tens of minutes)")
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument("--only", action="append", metavar="COMPONENT",
                        help="measure only this component (repeatable); implies --no-record")  # fmt: skip
    args = parser.parse_args(argv)
    root = settings_module.find_root()
    runs = []
    for run in range(args.runs):
        print(f"cold setup, run {run + 1}/{args.runs}", flush=True)
        began = time.monotonic()
        runs.append(cold_run(root, args.only))
        runs[-1]["total"] = time.monotonic() - began
    names = list(runs[0])
    rows = [(name, statistics.median(r[name] for r in runs), [r[name] for r in runs]) for name in names]
    for name, median, _ in rows:
        print(f"  {name:<22} median {median:7.1f} s")
    if not (args.no_record or args.only):
        table = ["| component | cold setup (median) | runs |", "|---|---|---|"]
        table += [f"| {n} | {m:.0f} s | {', '.join(f'{x:.0f}' for x in xs)} |" for n, m, xs in rows]
        record_section(
            root / "docs" / "performance.md",
            "bench-setup",
            f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores: an empty opslab cache and an empty "
            "Go build cache (Go module, Maven and apt downloads already local; a fresh machine adds them).",
            "\n".join(table),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
