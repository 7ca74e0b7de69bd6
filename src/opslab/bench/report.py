"""Recording benchmark figures in docs/performance.md, one marked section per benchmark."""

from __future__ import annotations

import os
import platform as host
import time
from pathlib import Path

import psutil

from opslab.primitives.files import write_atomic

Measure = tuple[str, str, str, str]
"""One row of a benchmark's table: what, its median, the target ('-': none), the runs."""


def record_section(document: Path, name: str, preamble: str, body: str) -> None:
    """Replace (or append) the section between <!-- name:start --> and <!-- name:end -->."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{preamble}\n\n{body}\n{end}"
    text = document.read_text() if document.is_file() else "# Performance\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        _, after = rest.split(end, 1)
        text = before + block + after
    else:
        text = text.rstrip() + f"\n\n## {name}\n\n{block}\n"
    write_atomic(document, text)


def machine() -> str:
    """The machine a figure was measured on, for the record."""
    return (
        f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB memory, "
        f"{host.system()} {host.machine()}, Python {host.python_version()}"
    )


def report_measures(document: Path | None, name: str, what: str, rows: list[Measure]) -> None:
    """Print ``rows``; unless ``document`` is None, record them as section ``name`` of it, dated,
    with the machine and ``what`` was measured."""
    print()
    for row in rows:
        print(f"  {row[0]:<40} {row[1]:>18}  target {row[2]}")
    if document is None:
        return
    table = ["| measure | median | target | runs |", "|---|---|---|---|"]
    table += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    preamble = f"Measured {time.strftime('%Y-%m-%d')} on {machine()}" + (f": {what}" if what else ".")
    record_section(document, name, preamble, "\n".join(table))
    print(f"recorded in {document.name}")
