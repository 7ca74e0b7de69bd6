"""`opslab agent oracle`: the reference responder, on the running incident."""

from __future__ import annotations

import time

import click

from opslab.agent.oracle import Oracle
from opslab.agent.session import incident_toolbox
from opslab.cli.context import load_settings
from opslab.cli.output import console


@click.group()
def agent() -> None:
    """The agent toolbox: tools an agent uses on an incident, every action checked by policy."""


@agent.command()
@click.option("--minutes", type=click.FloatRange(0.5, 60), default=10, show_default=True, help="Give up after this.")
def oracle(minutes: float) -> None:
    """Run the oracle (a deterministic runbook over the toolbox) on the running incident."""
    toolbox = incident_toolbox(load_settings())
    try:
        run = Oracle(toolbox).run(time.monotonic() + minutes * 60)
    finally:
        toolbox.close()
    if run.quiet:
        console.print("oracle: nothing found; submitted none / none and changed nothing")
    for service, fault_type, why in run.findings:
        console.print(f"oracle: {service} / {fault_type} ({why}): submitted")
    for escalation in run.escalations:
        console.print(f"[red]oracle could not act, escalating:[/] {escalation}")
    console.print("Now `opslab incident stop` scores it.")
