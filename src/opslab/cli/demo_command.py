"""`opslab demo`: the self-healing loop end to end, on the running platform. An incident breaks
the shop (the remediator is not told how), lab 6's remediator (the reference, or yours with
--agent) watches the alerts, investigates through the toolbox, writes a plan that the schema and
the policy check, acts, verifies, and submits; then the incident is scored like any responder's.
Then the same fault again with nobody responding, for as long as the remediator needed and a
little more, so the two runs' times to recover can be compared (--no-baseline skips it)."""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import click

from opslab.agent import remediation
from opslab.cli.context import load_settings, toolchain_for
from opslab.cli.incident_commands import print_outcome
from opslab.cli.output import console
from opslab.incidents import engine
from opslab.primitives.errors import ConfigError
from opslab.settings import Settings


@click.command()
@click.option("--incident", "name", default="inc-01", show_default=True,
              help="The incident to heal (see `opslab incident list`).")  # fmt: skip
@click.option("--agent", "agent_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A remediator of yours (lab 6's agent.py); default: the reference.")  # fmt: skip
@click.option("--model", default="deterministic", show_default=True,
              help="The remediator's model: deterministic, replay:PATH or openai:URL (with --model-name).")  # fmt: skip
@click.option("--model-name", default="", help="The model an OpenAI-compatible server serves.")
@click.option("--seed", type=int, default=1, show_default=True, help="The incident's seed.")
@click.option("--baseline/--no-baseline", default=True, show_default=True,
              help="Then run the same fault with nobody responding, for comparison.")  # fmt: skip
def demo(  # noqa: PLR0917 (click passes each option positionally)
    name: str, agent_path: Path | None, model: str, model_name: str, seed: int, baseline: bool
) -> None:
    """Watch the loop heal a fault: an incident, lab 6's remediator, the score."""
    for chatty in ("httpx", "mcp"):  # the story, not every HTTP request and MCP session behind it
        logging.getLogger(chatty).setLevel(logging.WARNING)
    settings = load_settings()
    agent = (agent_path or settings.paths.root / remediation.REFERENCE).resolve()
    if not agent.is_file():
        raise ConfigError(f"no remediator at {agent}", fix="give --agent the path of your lab 6 agent.py")
    if engine.load_active(settings) is not None:
        raise ConfigError("an incident is running", fix="end it first with `opslab incident stop`")
    opa = toolchain_for(settings).require("opa")
    steps = 4 if baseline else 3
    console.print(f"[bold]1/{steps}[/] starting incident {name}: a hidden fault under steady load")
    active = engine.start(settings, name, seed=seed, healthy_within=HEALTHY_WITHIN, responder="agent:demo")
    console.print(f"     the shop is breaking; the remediator is told nothing (run: {active.run_dir})")
    console.print(f"[bold]2/{steps}[/] {agent.name}: alerts, evidence through the toolbox, a checked plan, act, verify")
    args = ["--model", model, *(["--model-name", model_name] if model_name else []), "--quiet-after", "60"]
    try:
        with tempfile.TemporaryDirectory(prefix="opslab-demo-") as work:
            done = remediation.run(settings, opa, agent, Path(work), args,
                                   on_line=lambda line: console.print(f"     [dim]{line}[/]"))  # fmt: skip
            report = done.report
    except BaseException:
        engine.stop(settings, force=True)
        raise
    outcome_word = report.get("outcome") or f"no report (exit {done.code})"
    why = f" ({report['escalation']})" if report.get("escalation") else ""
    console.print(f"     the remediator says: {outcome_word}{why}")
    for step in report.get("steps", []):
        verified = "verified" if step.get("verified") else "not verified"
        console.print(f"     step {step.get('id')}: {step.get('tool')} {step.get('arguments')} → {verified}")
    console.print(f"[bold]3/{steps}[/] scoring: are the SLIs back inside their objectives, every workload as intended?")
    outcome = engine.stop(settings, tick=lambda what: console.print(f"  … {what}"))
    if outcome is None:
        return
    print_outcome(outcome)
    if baseline:
        console.print(f"[bold]4/{steps}[/] the same fault with remediation off")
        alone, outside = unattended(settings, name, seed, outcome.score.time_to_mitigate)
        console.print(f"[bold]with remediation:[/] {recovery(outcome)}   report: {outcome.run_dir / 'report.html'}")
        still = f" ({'; '.join(outside)})" if outside else ""
        console.print(f"[bold]without:[/] {recovery(alone)}{still}   report: {alone.run_dir / 'report.html'}")


HEALTHY_WITHIN = 180.0
"""How long a run waits for the shop to be healthy before its fault (the one before is being undone)."""
BASELINE_MIN, BASELINE_MAX, BASELINE_MARGIN = 60.0, 180.0, 15.0
"""How long the fault runs unattended: as long as the remediator needed plus a margin, within bounds."""


def unattended(
    settings: Settings, name: str, seed: int, remediated_after: float | None
) -> tuple[engine.Outcome, list[str]]:
    """The incident again, with nobody responding for as long as the remediator needed (and a margin)."""
    window = min(max((remediated_after or BASELINE_MAX) + BASELINE_MARGIN, BASELINE_MIN), BASELINE_MAX)
    active = engine.start(settings, name, seed=seed, healthy_within=HEALTHY_WITHIN, responder="none")
    console.print(f"     nobody responds for {window:.0f} s (run: {active.run_dir})")
    deadline = time.monotonic() + window
    outside: list[str] = []
    try:
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(30.0, left))  # nobody acts: the wait is the measure, not a condition
            outside = engine.slis_outside(settings)
            elapsed = window - max(deadline - time.monotonic(), 0)
            console.print(f"  … {elapsed:.0f} s: " + ("; ".join(outside) or "SLIs within"))
    except BaseException:
        engine.stop(settings, force=True)
        raise
    outcome = engine.stop(settings, settle_wait=0)
    assert outcome is not None  # not forced: a scored run
    return outcome, outside


def recovery(outcome: engine.Outcome) -> str:
    score = outcome.score
    if score.mitigated and score.time_to_mitigate is not None:
        return f"recovered {score.time_to_mitigate:.0f} s after the fault"
    return "not recovered when the run ended"
