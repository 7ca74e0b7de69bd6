"""`opslab up | down | status | logs`."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import click
from rich.table import Table

from opslab.cli.context import load_settings, platform_for, toolchain_for
from opslab.cli.output import console, fmt_seconds, step
from opslab.cli.setup_command import do_setup
from opslab.runtime.lifecycle import ComponentStatus
from opslab.settings import Settings
from opslab.toolchain.setup import missing_components


class UpPrinter:
    def step(self, name: str, seconds: float, detail: str) -> None:
        step("✓", name, seconds, detail)


def status_table(rows: list[ComponentStatus]) -> Table:
    table = Table(title=None, show_lines=False, header_style="bold")
    for column in ("component", "state", "ready", "pid", "endpoint", "detail"):
        table.add_column(column)
    for row in rows:
        ready = "[green]yes[/]" if row.ready else "[red]no[/]"
        table.add_row(row.name, row.state, ready, str(row.pid or "-"), row.endpoint, row.detail)
    return table


@click.command()
@click.option("--nodes", type=str, default=None, help="Number of simulated worker nodes (default 3).")
def up(nodes: str | None) -> None:
    """Start the embedded platform (runs setup first if anything is missing)."""
    settings = load_settings(nodes=nodes)
    missing = missing_components(toolchain_for(settings))
    if missing:
        console.print(f"first run: building {', '.join(missing)}")
        do_setup(tuple(missing))
    platform = platform_for(settings)
    console.print(f"opslab up: {settings.cluster.nodes} nodes, state in {settings.paths.state}")
    report = platform.up(UpPrinter())
    console.print(status_table(report.components))
    if report.already_running:
        console.print(f"already running, left alone: {', '.join(report.already_running)}")
    console.print(f"[bold green]platform ready[/] in {fmt_seconds(report.seconds)}")
    console.print(f"  kubectl --kubeconfig {settings.paths.kubeconfig} get nodes")
    console.print(f"  source {settings.paths.env_file}   # KUBECONFIG, endpoints and tools on PATH")
    for line in dashboard_lines(settings):
        console.print(line)


@click.command()
@click.option("--purge", is_flag=True, help="Also delete the cluster's data, certificates and logs.")
def down(purge: bool) -> None:
    """Stop every platform process (and, with --purge, wipe its state)."""
    platform = platform_for(load_settings())
    report = platform.down(purge=purge)
    what = f"stopped {len(report.stopped)} components" if report.stopped else "nothing was running"
    if report.swept:
        what += f"; stopped {len(report.swept)} stray processes"
    if report.purged:
        what += "; state wiped"
    console.print(f"opslab down: {what} in {fmt_seconds(report.seconds)}")
    if report.leftover_ports:
        console.print(f"note: ports {report.leftover_ports} are held by processes that are not opslab's")


@click.command()
def status() -> None:
    """Show each component's state and readiness. Exit status 0 only if all are ready."""
    platform = platform_for(load_settings())
    if not platform.running():
        console.print("the platform is not running: start it with `make up`")
        sys.exit(3)
    rows = platform.status()
    console.print(status_table(rows))
    for line in dashboard_lines(platform.settings):
        console.print(line)
    sys.exit(0 if all(r.ready for r in rows) else 1)


def dashboard_lines(settings: Settings) -> list[str]:
    """Where to look: the SLO dashboards Prometheus serves, and the Thanos querier."""
    p = settings.ports
    return [
        f"  SLO dashboards  http://127.0.0.1:{p.prometheus}/consoles/index.html",
        f"  Thanos querier  http://127.0.0.1:{p.thanos_query}  (live data and a month of history)",
    ]


@click.command()
@click.argument("component")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("-n", "--lines", type=click.IntRange(1, 100000), default=50, show_default=True)
def logs(component: str, follow: bool, lines: int) -> None:
    """Print a component's log (see `opslab status` for the names)."""
    platform = platform_for(load_settings())
    path = platform.registry.get(component).log
    if not path.is_file():
        console.print(f"{component} has no log yet ({path}): start the platform with `make up`")
        sys.exit(1)
    args = ["tail", "-n", str(lines), *(["-F"] if follow else []), str(path)]
    with contextlib.suppress(KeyboardInterrupt):
        subprocess.run(args, check=False)
