"""`opslab demo`: the self-healing loop end to end, on the running platform. An incident breaks
the shop (nobody is told how); its SLO alert goes from Prometheus through Alertmanager and the alert
bridge onto the Kafka topic `alerts`, and from there (the relay) to lab 5's automation backend
(the reference, or yours with --automation), whose workers run a runbook if one fits and escalate
if none does. An escalation pages lab 6's remediator (the reference, or yours with --agent): it
reads the alerts and evidence through the toolbox, writes a plan that the schema and the policy
check, acts, verifies, and submits; then the incident is scored like any responder's. Then the same
fault again with nobody responding, for as long as the loop needed and a little more, so the two
runs' times to recover can be compared (--no-baseline skips it)."""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from opslab.agent import automation, loop, remediation
from opslab.cli.context import load_settings, toolchain_for
from opslab.cli.incident_commands import print_outcome
from opslab.cli.output import console
from opslab.incidents import engine
from opslab.primitives.errors import ConfigError
from opslab.settings import Settings

PAGE_WITHIN = 240.0
"""How long the demo waits for the backend to escalate before it pages the remediator anyway."""


@click.command()
@click.option("--incident", "name", default="inc-01", show_default=True,
              help="The incident to heal (see `opslab incident list`).")  # fmt: skip
@click.option("--agent", "agent_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A remediator of yours (lab 6's agent.py); default: the reference.")  # fmt: skip
@click.option("--automation", "automation_path", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="An automation backend of yours (your lab 5 directory); default: the reference.")  # fmt: skip
@click.option("--model", default="deterministic", show_default=True,
              help="The remediator's model: deterministic, replay:PATH or openai:URL (with --model-name).")  # fmt: skip
@click.option("--model-name", default="", help="The model an OpenAI-compatible server serves.")
@click.option("--seed", type=int, default=1, show_default=True, help="The incident's seed.")
@click.option("--baseline/--no-baseline", default=True, show_default=True,
              help="Then run the same fault with nobody responding, for comparison.")  # fmt: skip
def demo(  # noqa: PLR0917 (click passes each option positionally)
    name: str,
    agent_path: Path | None,
    automation_path: Path | None,
    model: str,
    model_name: str,
    seed: int,
    baseline: bool,
) -> None:
    """Watch the loop heal a fault: an incident, the alert pipeline, lab 5's backend, lab 6's remediator, the score."""
    for chatty in ("httpx", "mcp"):  # the story, not every HTTP request and MCP session behind it
        logging.getLogger(chatty).setLevel(logging.WARNING)
    settings = load_settings()
    agent = (agent_path or settings.paths.root / remediation.REFERENCE).resolve()
    if not agent.is_file():
        raise ConfigError(f"no remediator at {agent}", fix="give --agent the path of your lab 6 agent.py")
    backend_code = (automation_path or settings.paths.root / automation.REFERENCE).resolve()
    if not (backend_code / "api.py").is_file() or not (backend_code / "workers.py").is_file():
        raise ConfigError(f"no api.py and workers.py in {backend_code}",
                          fix="give --automation the directory of your lab 5 work")  # fmt: skip
    if engine.load_active(settings) is not None:
        raise ConfigError("an incident is running", fix="end it first with `opslab incident stop`")
    opa = toolchain_for(settings).require("opa")
    steps = 5 if baseline else 4
    console.print(f"[bold]1/{steps}[/] starting incident {name}: a hidden fault under steady load")
    who = remediation.responder("reference" if agent_path is None else "yours", model, model_name)
    active = engine.start(settings, name, seed=seed, healthy_within=HEALTHY_WITHIN, responder=who)
    console.print(f"     the shop is breaking; nobody is told how (run: {active.run_dir})")
    args = [*remediation.model_args(model, model_name), "--quiet-after", "60"]
    try:
        logs = Path(active.run_dir) / "loop"  # the processor's and lab 5's logs, kept with the run
        logs.mkdir(exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="opslab-demo-") as work:
            orders = loop.OrdersPipeline(f"127.0.0.1:{settings.ports.kafka}", f"http://127.0.0.1:{settings.ports.shop}",
                                         settings.paths.root / loop.PROCESSOR, logs).start()  # fmt: skip
            try:
                page = watch(settings, active, backend_code, logs, f"2/{steps}")
                console.print(f"[bold]3/{steps}[/] {agent.name}: alerts, evidence through the toolbox, a checked "
                              "plan, act, verify")  # fmt: skip
                done = remediation.run(settings, opa, agent, Path(work), args,
                                       on_line=lambda line: console.print(f"     [dim]{line}[/]"))  # fmt: skip
                report = done.report
                pipeline = orders.settle()
            finally:
                orders.close()
            _keep(Path(active.run_dir), page, report, pipeline)
    except BaseException:
        engine.stop(settings, force=True)
        raise
    outcome_word = report.get("outcome") or f"no report (exit {done.code})"
    why = f" ({report['escalation']})" if report.get("escalation") else ""
    console.print(f"     the remediator says: {outcome_word}{why}")
    for step in report.get("steps", []):
        verified = "verified" if step.get("verified") else "not verified"
        console.print(f"     step {step.get('id')}: {step.get('tool')} {step.get('arguments')} → {verified}")
    stalled = "" if pipeline["running"] else " (the processor stopped: see loop/processor.log in the run)"
    console.print(f"     lab 4's order processor: {pipeline['published']} orders published since the fault, "
                  f"{pipeline['orders']} captured, {pipeline['duplicated_orders']} twice{stalled}")  # fmt: skip
    console.print(f"[bold]4/{steps}[/] scoring: are the SLIs back inside their objectives, every workload as intended?")
    outcome = engine.stop(settings, tick=lambda what: console.print(f"  … {what}"))
    if outcome is None:
        return
    print_outcome(outcome)
    if baseline:
        console.print(f"[bold]5/{steps}[/] the same fault with remediation off")
        alone, outside = unattended(settings, name, seed, outcome.score.time_to_mitigate)
        console.print(f"[bold]with remediation:[/] {recovery(outcome)}   report: {outcome.run_dir / 'report.html'}")
        still = f" ({'; '.join(outside)})" if outside else ""
        console.print(f"[bold]without:[/] {recovery(alone)}{still}   report: {alone.run_dir / 'report.html'}")


def watch(settings: Settings, active: engine.Active, backend_code: Path, work: Path, step: str) -> dict[str, Any]:
    """Step 2: the alert's way to lab 5's backend, until a job is escalated (a page) or PAGE_WITHIN
    passes; what happened, with times since the fault, for the run directory."""
    console.print(f"[bold]{step}[/] the alert pipeline: Prometheus → Alertmanager → Kafka `alerts` → relay → "
                  f"lab 5's backend ({backend_code.name})")  # fmt: skip
    injected = active.injected_at or time.time()
    events: list[dict[str, Any]] = []

    def since() -> float:
        return round(time.time() - injected, 1)

    def on_alert(alert: dict[str, Any]) -> None:
        events.append({"at": since(), "alert": alert.get("alertname"), "status": alert.get("status"),
                       "service": alert.get("service")})  # fmt: skip
        console.print(f"     {since():5.0f} s  Kafka `alerts` → lab 5: {alert.get('alertname')} "
                      f"{alert.get('service') or ''} {alert.get('status')}")  # fmt: skip

    def on_job(job: dict[str, Any]) -> None:
        kept = {key: job.get(key) for key in ("id", "alertname", "runbook", "state", "result")}
        events.append({"at": since(), "job": kept})
        result = f" ({job['result']})" if job.get("result") else ""
        console.print(f"     {since():5.0f} s  job {str(job.get('id'))[:8]} {job.get('alertname')}: "
                      f"runbook {job.get('runbook')}, {job.get('state')}{result}")  # fmt: skip

    with loop.running(settings, work, Path(active.kubeconfig), backend_code) as healing:
        console.print("     lab 5's API and workers are up, the relay reads the topic from its end; waiting")
        job = healing.wait_for_page(PAGE_WITHIN, on_alert=on_alert, on_job=on_job)
    if job is None:
        console.print(f"     no job was escalated within {PAGE_WITHIN:.0f} s: paging the remediator anyway")
    else:
        console.print(f"     {since():5.0f} s  {job.get('state')}: paging the AI remediator")
    return {"paged_at": since(), "escalated": job, "events": events}


def _keep(run_dir: Path, page: dict[str, Any], report: dict[str, Any], pipeline: dict[str, Any]) -> None:
    """The loop's part of the story, beside the incident's timeline."""
    record = {**page, "remediator": {k: report.get(k) for k in ("outcome", "diagnosis", "escalation", "steps")},
              "orders": pipeline}  # fmt: skip
    (run_dir / "loop.json").write_text(json.dumps(record, indent=2, default=str))


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
