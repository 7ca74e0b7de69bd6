"""The scoreboard: how each responder did on each incident, from the scored runs on disk.

Every scored incident run leaves ``run.json`` (incident, responder, start, seed) beside its
``score.json``. The scoreboard takes each responder's newest run of each incident: a table of time
to mitigate (or why not), points and actions, and a plot of time to mitigate per incident with one
bar per responder (no remediation, the oracle, an agent, a person). A responder that did not
mitigate an incident gets no bar there, and the table says so.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

RUN_FILE = "run.json"


def record_run(run_dir: Path, incident: str, responder: str, started_at: float, seed: int) -> None:
    """Write what the scoreboard needs to know about a scored run, beside its score."""
    record = {"incident": incident, "responder": responder, "started_at": started_at, "seed": seed}
    (run_dir / RUN_FILE).write_text(json.dumps(record, indent=1) + "\n")


@dataclass(frozen=True)
class Row:
    incident: str
    responder: str
    started_at: float
    mitigated: bool
    time_to_mitigate: float | None
    points: int
    actions: int
    run_dir: Path


def collect(runs: Path) -> list[Row]:
    """Each responder's newest scored run of each incident under ``runs``."""
    newest: dict[tuple[str, str], Row] = {}
    for record_file in sorted(runs.glob(f"*/{RUN_FILE}")):
        score_file = record_file.parent / "score.json"
        try:
            record, score = json.loads(record_file.read_text()), json.loads(score_file.read_text())
            row = Row(
                incident=str(record["incident"]), responder=str(record["responder"]),
                started_at=float(record["started_at"]), mitigated=bool(score["mitigated"]),
                time_to_mitigate=None if score["time_to_mitigate"] is None else float(score["time_to_mitigate"]),
                points=int(score["points"]), actions=int(score["actions"]), run_dir=record_file.parent,
            )  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a run cut short or written by an older opslab: not on the board
        key = (row.incident, row.responder)
        if key not in newest or row.started_at > newest[key].started_at:
            newest[key] = row
    return sorted(newest.values(), key=lambda r: (r.incident, r.responder))


def responders(rows: Iterable[Row]) -> list[str]:
    """The responders on the board: nobody first, then the oracle, then everyone else by name."""
    order = {"none": 0, "oracle": 1}
    return sorted({r.responder for r in rows}, key=lambda name: (order.get(name, 2), name))


def cell(row: Row | None) -> str:
    if row is None:
        return "-"
    if not row.mitigated or row.time_to_mitigate is None:
        return f"not mitigated ({row.points} pts)"
    return f"{row.time_to_mitigate:.0f} s ({row.points} pts, {row.actions} actions)"


def plot(rows: list[Row], path: Path) -> Path:
    """Time to mitigate per incident, one bar per responder (none where it was not mitigated)."""
    names = responders(rows)
    incidents = sorted({r.incident for r in rows})
    by_key = {(r.incident, r.responder): r for r in rows}
    width = 0.8 / max(len(names), 1)
    figure, axes = plt.subplots(figsize=(max(6.0, 1.1 * len(incidents) + 2), 3.6))
    for index, name in enumerate(names):
        xs, heights = [], []
        for position, incident in enumerate(incidents):
            row = by_key.get((incident, name))
            if row is not None and row.mitigated and row.time_to_mitigate is not None:
                xs.append(position + (index - (len(names) - 1) / 2) * width)
                heights.append(row.time_to_mitigate)
        axes.bar(xs, heights, width=width, label=name)
    axes.set_xticks(range(len(incidents)), incidents, rotation=30, ha="right")
    axes.set_ylabel("time to mitigate (s)")
    axes.set_title("Time to mitigate, per incident and responder (no bar: not mitigated)")
    axes.legend(fontsize="small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
