"""`opslab scenario list | show NAME | validate [FILE...] | run NAME`."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.table import Table

from opslab.cli.context import load_settings
from opslab.cli.output import console
from opslab.primitives.errors import ConfigError
from opslab.scenarios.model import Scenario, ScenarioInvalid, catalog, find, load_scenario
from opslab.scenarios.runner import run_scenario


def _directory() -> Path:
    return load_settings().paths.root / "scenarios"


def _load(name: str) -> Scenario:
    try:
        return find(_directory(), name)
    except ScenarioInvalid as exc:
        raise ConfigError(str(exc)) from None


@click.group()
def scenario() -> None:
    """Chaos scenarios: break the shop under load, see which alert catches it, and recover."""


@scenario.command("list")
def list_() -> None:
    """List the scenarios with the failure each injects."""
    try:
        scenarios = catalog(_directory())
    except ScenarioInvalid as exc:
        raise ConfigError(str(exc)) from None
    table = Table(header_style="bold")
    for column in ("scenario", "injects", "load"):
        table.add_column(column)
    for s in scenarios:
        table.add_row(s.name, s.injects.split(" (")[0], f"{s.load.shape}, {s.load.rps:g} req/s")
    console.print(table)
    console.print("Run one with `opslab scenario run NAME`; the expected alert is revealed afterwards.")


@scenario.command()
@click.argument("name")
@click.option("--answer", is_flag=True, help="Also reveal the expected alert and the explanation.")
def show(name: str, answer: bool) -> None:
    """Describe a scenario (without the answer unless --answer)."""
    s = _load(name)
    console.print(f"[bold]{s.title}[/]  ({s.path.relative_to(_directory().parent)})")
    console.print(s.description)
    console.print(f"load: {s.load.shape} at {s.load.rps:g} req/s ({s.load.mix} mix), up to {s.load.duration:.0f} s")
    if answer:
        if s.expectation:
            e = s.expectation
            console.print(f"expected alert: {e.alert} within {e.within:.0f} s {e.labels or ''}")
        console.print(f"answer: {s.answer}")


@scenario.command()
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
def validate(files: tuple[Path, ...]) -> None:
    """Validate scenario files (default: all of scenarios/)."""
    paths = list(files) or sorted(_directory().glob("*.yaml"))
    failures = 0
    for path in paths:
        try:
            load_scenario(path)
            console.print(f"  ok       {path}")
        except ScenarioInvalid as exc:
            failures += 1
            console.print(f"  invalid  {exc}")
    if failures:
        sys.exit(1)


class _Phases:
    def phase(self, name: str, detail: str = "") -> None:
        console.print(f"  → {name}: {detail}")
        console.file.flush()


@scenario.command()
@click.argument("name")
def run(name: str) -> None:
    """Run a scenario against the running platform and write a report."""
    s = _load(name)
    settings = load_settings()
    console.print(f"scenario {s.name}: {s.title}")
    summary = run_scenario(s, settings, observer=_Phases())
    mark = "[green]PASS[/]" if summary.passed else "[red]FAIL[/]"
    console.print(f"{mark} {summary.verdict}")
    for key, value in summary.facts:
        console.print(f"  {key:<30} {value}")
    if summary.leftovers_removed:
        console.print(f"  removed left-over faults: {', '.join(summary.leftovers_removed)}")
    console.print(f"[bold]answer:[/] {s.answer}")
    console.print(f"report: {summary.report}")
    sys.exit(0 if summary.passed else 1)
