"""`opslab incident list | types | start | status | submit | stop`."""

from __future__ import annotations

import re
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from opslab.cli.context import load_settings
from opslab.cli.output import console
from opslab.incidents import engine, vocabulary
from opslab.incidents import scoreboard as board
from opslab.incidents.catalog import IncidentInvalid, catalog
from opslab.primitives.errors import ConfigError

HELDOUT = click.option(
    "--catalog",
    "extra",
    type=click.Path(path_type=Path, file_okay=False),
    help="A held-out incident folder (instructors); also OPSLAB_INCIDENTS_HELDOUT.",
)


@click.group()
def incident() -> None:
    """Incidents: a hidden fault under load; diagnose it, mitigate it, and be scored."""


@incident.command("list")
@HELDOUT
def list_(extra: Path | None) -> None:
    """List the incidents (names and difficulty only: what they break is the answer)."""
    try:
        incidents = catalog(load_settings().paths.root, extra)
    except IncidentInvalid as exc:
        raise ConfigError(str(exc)) from None
    table = Table(header_style="bold")
    for column in ("incident", "difficulty", "held out"):
        table.add_column(column)
    for i in incidents:
        table.add_row(i.name, "*" * i.difficulty, "yes" if i.held_out else "")
    console.print(table)
    console.print("Start one with `opslab incident start NAME` or `opslab incident start --random`.")


@incident.command()
def types() -> None:
    """The vocabulary a diagnosis is written in: services and fault types."""
    console.print("services: " + ", ".join(vocabulary.services()))
    table = Table(header_style="bold")
    table.add_column("fault type")
    table.add_column("what it looks like")
    for name, description in vocabulary.FAULT_TYPES.items():
        table.add_row(name, description)
    console.print(table)


@incident.command()
@click.argument("name", required=False)
@click.option("--random", "random_", is_flag=True, help="Draw an incident from the catalog.")
@click.option("--seed", type=int, help="Seed for --random and for choices inside the incident.")
@click.option("--minutes", type=click.IntRange(5, 120), default=30, show_default=True, help="Time limit.")
@click.option("--wait", type=click.IntRange(0, 600), default=0, help="Seconds to wait for a healthy shop first.")
@click.option("--responder", default="person", show_default=True, callback=lambda _c, _p, v: _responder(v),
              help="Who responds, for the scoreboard (e.g. your name, or agent:mine).")  # fmt: skip
@HELDOUT
def start(  # noqa: PLR0917 (click passes each option positionally)
    name: str | None, random_: bool, seed: int | None, minutes: int, wait: int, responder: str, extra: Path | None
) -> None:
    """Start an incident under steady load; what it breaks stays hidden until `stop`."""
    if bool(name) == random_:
        raise click.UsageError("name an incident, or pass --random (see `opslab incident list`)")
    settings = load_settings()
    try:
        active = engine.start(
            settings, name, seed=seed, extra=extra, time_limit=minutes * 60.0, healthy_within=float(wait),
            responder=responder,
        )  # fmt: skip
    except IncidentInvalid as exc:
        raise ConfigError(str(exc)) from None
    console.print(
        f"incident {active.run_id} started{f' ({name})' if name else ''}: something may be wrong in the shop."
    )
    console.print(f"  your kubeconfig:   export KUBECONFIG={active.kubeconfig}")
    console.print("  look:              opslab incident status; kubectl -n shop get deploy,pods,events")
    console.print("  diagnose:          opslab incident submit --service S --fault-type T  (opslab incident types)")
    console.print(f"  finish:            opslab incident stop  (time limit {minutes} min)")


@incident.command()
def status() -> None:
    """Elapsed time, firing alerts and the error budget spent since the start."""
    s = engine.status(load_settings())
    console.print(f"incident {s.run_id}: {s.elapsed / 60:.1f} of {s.time_limit / 60:.0f} min")
    if s.elapsed > s.time_limit:
        console.print("[red]over the time limit[/]: finish with `opslab incident stop`")
    console.print("firing alerts: " + (", ".join(s.alerts) if s.alerts else "none"))
    if s.budget_spent:
        spent = ", ".join(f"{service} {value:.2f} %" for service, value in s.budget_spent.items() if value >= 0.005)
        console.print("30-day error budget spent since the start: " + (spent or "none"))
    console.print(f"diagnoses submitted: {s.submissions}")
    console.print(f"your kubeconfig: {s.kubeconfig}")


@incident.command()
@click.option("--service", required=True, help="The service at fault (node for a node, none if nothing is wrong).")
@click.option("--fault-type", required=True, help="The fault type (see `opslab incident types`).")
@click.option("--notes", default="", help="Free text for the report.")
def submit(service: str, fault_type: str, notes: str) -> None:
    """Record a diagnosis (one per finding; the incident keeps running)."""
    engine.submit(load_settings(), service, fault_type, notes)
    console.print(f"recorded: {service} / {fault_type}. Mitigate, then `opslab incident stop`.")


@incident.command()
@click.option("--force", is_flag=True, help="Undo the incident without scoring it.")
def stop(force: bool) -> None:
    """End the incident: score it, reveal the answer, and restore the shop."""
    outcome = engine.stop(load_settings(), force=force, tick=lambda what: console.print(f"  … {what}"))
    if outcome is None:
        console.print("no incident was running" if force else "stopped")
        return
    print_outcome(outcome)


def print_outcome(outcome: engine.Outcome) -> None:
    """The score, what it was made of, the answer and the debrief of an ended incident."""
    score = outcome.score
    console.print(f"[bold]{outcome.incident.name}: {outcome.incident.title}[/]   {score.points} / 100")
    parts = ", ".join(f"{k} {v}" for k, v in score.breakdown.items())
    console.print(f"  points: {parts}")
    ttm = f", {score.time_to_mitigate:.0f} s after the fault" if score.time_to_mitigate is not None else ""
    console.print(f"  mitigated: {'yes' if score.mitigated else 'no'}{ttm}; actions: {score.actions}")
    for reason in score.reasons:
        console.print(f"  [red]✗[/] {escape(reason)}")
    console.print("[bold]answer:[/] " + "; ".join(f"{f.service}: {f.fault_type}" for f in outcome.incident.answer))
    console.print("[bold]what went in:[/] " + ("; ".join(outcome.injected) or "nothing"))
    console.print(outcome.incident.debrief)
    console.print(f"report: {outcome.run_dir / 'report.html'}")


def _responder(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9:._-]{0,39}", value):
        raise click.BadParameter(f"{value!r}: use letters, digits and : . _ - (at most 40)")
    return value


@incident.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where the plot goes (default: .opslab/runs/scoreboard.png).")  # fmt: skip
def scoreboard(out: Path | None) -> None:
    """Each responder's newest scored run of each incident: time to mitigate, points, actions; and a plot."""
    settings = load_settings()
    rows = board.collect(settings.paths.runs)
    if not rows:
        console.print("no scored incident yet: `opslab incident start`, respond, `opslab incident stop`")
        return
    names = board.responders(rows)
    by_key = {(r.incident, r.responder): r for r in rows}
    table = Table(header_style="bold")
    table.add_column("incident")
    for name in names:
        table.add_column("no remediation" if name == "none" else name)
    for incident_name in sorted({r.incident for r in rows}):
        table.add_row(incident_name, *(board.cell(by_key.get((incident_name, n))) for n in names))
    console.print(table)
    path = board.plot(rows, out or settings.paths.runs / "scoreboard.png")
    console.print(f"plot: {path}")
