"""`opslab agent oracle | mcp | terraform | approvals | approve | reject`: the reference responder,
the toolbox over MCP, the toolbox's Terraform for a person on call, and the approval gate a plan
step above the stated risk waits at."""

from __future__ import annotations

import time
from pathlib import Path

import click
import uvicorn
from rich.markup import escape

from opslab.agent import mcp_server
from opslab.agent.approvals import Gate
from opslab.agent.oracle import Oracle
from opslab.agent.session import incident_toolbox
from opslab.agent.toolbox import PolicyDenied, ToolError
from opslab.cli.context import load_settings
from opslab.cli.output import console
from opslab.incidents import engine
from opslab.primitives.errors import ConfigError


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
@click.argument("config", default="platform")
@click.option("--yes", is_flag=True, help="Apply without asking (the plan is still shown first).")
def terraform(config: str, yes: bool) -> None:
    """Plan CONFIG (an allow-listed Terraform configuration) and apply exactly that plan, through the
    toolbox: as the terraform runner, checked by policy, recorded as your action on the incident."""
    toolbox = incident_toolbox(load_settings())
    try:
        shown = toolbox.terraform_plan(config)
        for change in shown["changes"]:
            console.print(f"  {'/'.join(change['actions'])} {change['address']}: {change['attributes']}")
        console.print(f"plan {shown['plan_digest']}: {shown['summary']}")
        if not shown["changes"]:
            return
        if not yes and not click.confirm("Apply this plan?", default=False):
            console.print("not applied")
            return
        toolbox.terraform_apply(config, shown["plan_digest"])
        console.print(f"applied plan {shown['plan_digest']}")
    except (PolicyDenied, ToolError) as exc:
        raise ConfigError(f"terraform {config}: {exc}", fix="read the reason above; nothing was applied") from None
    finally:
        toolbox.close()


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


def _run_dir(run: str) -> Path:
    """RUN as a run directory: a path, or a name under .opslab/runs."""
    given = Path(run).expanduser()
    if given.is_dir():
        return given.resolve()
    runs = load_settings().paths.runs
    if (runs / run).is_dir():
        return runs / run
    raise ConfigError(f"no run {run!r}", fix=f"give a run directory, or a name from {runs}")


@agent.command()
@click.argument("run")
def approvals(run: str) -> None:
    """List the steps of RUN that wait for a human's approval."""
    waiting = Gate(_run_dir(run)).pending()
    if not waiting:
        console.print("nothing waits for approval")
    for request in waiting:
        action = request["action"]
        console.print(escape(f"{request['step']}: {action.get('tool')} {action.get('arguments')}"))
        for reason in request["reasons"]:
            console.print(f"  needs approval: {escape(reason)}")


@agent.command()
@click.argument("run")
@click.argument("step")
@click.option("--reason", default="", help="Why (kept with the answer).")
def approve(run: str, step: str, reason: str) -> None:
    """Approve STEP of RUN: the waiting agent goes on with it."""
    verdict = Gate(_run_dir(run)).answer(step, True, reason)
    console.print(f"approved {step} (by {verdict.by})")


@agent.command()
@click.argument("run")
@click.argument("step")
@click.option("--reason", required=True, help="Why not (the agent reports it).")
def reject(run: str, step: str, reason: str) -> None:
    """Reject STEP of RUN: the waiting agent must not run it."""
    verdict = Gate(_run_dir(run)).answer(step, False, reason)
    console.print(escape(f"rejected {step} (by {verdict.by}): {reason}"))
