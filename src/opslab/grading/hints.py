"""Progressive hints: `opslab lab hint N` reveals the next one; the count is remembered."""

from __future__ import annotations

from pathlib import Path

from opslab.grading.labs import Lab
from opslab.primitives.files import write_atomic


def _counter(state: Path, lab: Lab) -> Path:
    return state / "labs" / lab.name / "hints-revealed"


def revealed_count(state: Path, lab: Lab) -> int:
    try:
        return int(_counter(state, lab).read_text().strip())
    except (OSError, ValueError):
        return 0


def reveal(state: Path, lab: Lab, *, show_all: bool = False) -> tuple[list[str], int]:
    """Reveal the next hint (or, with ``show_all``, list those revealed); return (hints shown, total)."""
    hints = lab.hints()
    count = revealed_count(state, lab)
    if show_all:
        return hints[:count] or ["No hint revealed yet: run `opslab lab hint N` for the first."], len(hints)
    if count >= len(hints):
        return [
            f"All {len(hints)} hints are revealed (see them with --all); the solution walkthrough is in the README."
        ], len(hints)
    write_atomic(_counter(state, lab), str(count + 1))
    return [hints[count]], len(hints)
