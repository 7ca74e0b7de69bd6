"""`opslab agent oracle`: the reference responder, on the running incident."""

from __future__ import annotations

import time

import click
import uvicorn

from opslab.agent import mcp_server
from opslab.agent.oracle import Oracle
from opslab.agent.session import incident_toolbox
from opslab.cli.context import load_settings
from opslab.cli.output import console
from opslab.incidents import engine


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


@agent.command()
@click.option("--port", type=click.IntRange(1024, 65535), default=18190, show_default=True, help="Port on 127.0.0.1.")
def mcp(port: int) -> None:
    """Serve the toolbox over MCP (streamable HTTP) for the running incident, until Ctrl-C."""
    settings = load_settings()
    token_file = engine.folder(settings) / "mcp-token"
    token = mcp_server.new_token(token_file)
    toolbox = incident_toolbox(settings)
    console.print(f"MCP server: http://127.0.0.1:{port}/mcp  (Authorization: Bearer $(cat {token_file}))")
    try:
        uvicorn.run(mcp_server.app(toolbox, token), host="127.0.0.1", port=port, log_level="warning")
    finally:
        toolbox.close()
        token_file.unlink(missing_ok=True)
