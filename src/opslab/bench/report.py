"""Recording benchmark figures in docs/performance.md, one marked section per benchmark."""

from __future__ import annotations

from pathlib import Path

from opslab.primitives.files import write_atomic


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
