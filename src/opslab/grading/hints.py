"""Progressive hints: `opslab lab hint N [--track T]` reveals the next one; the count is remembered
per lab and track (a Go learner of lab 2 does not reveal the kopf hints first)."""

from __future__ import annotations

from pathlib import Path

from opslab.grading.labs import Lab
from opslab.primitives.files import write_atomic


def _counter(state: Path, lab: Lab, track: str) -> Path:
    return state / "labs" / lab.name / (f"hints-revealed-{track}" if track else "hints-revealed")


def revealed_count(state: Path, lab: Lab, track: str = "") -> int:
    try:
        return int(_counter(state, lab, track).read_text().strip())
    except (OSError, ValueError):
        return 0


def reveal(state: Path, lab: Lab, *, track: str = "", show_all: bool = False) -> tuple[list[str], int]:
    """Reveal the next hint (or, with ``show_all``, list those revealed); return (hints shown, total)."""
    hints = lab.hints(track)
    count = revealed_count(state, lab, track)
    option = f" --track {track}" if track else ""
    if show_all:
        return hints[:count] or [f"No hint revealed yet: run `opslab lab hint {lab.number}{option}`."], len(hints)
    if count >= len(hints):
        return [
            f"All {len(hints)} hints are revealed (see them with --all). The debrief explains the reference "
            f"solution: `opslab lab debrief {lab.number}`."
        ], len(hints)
    write_atomic(_counter(state, lab, track), str(count + 1))
    return [hints[count]], len(hints)
