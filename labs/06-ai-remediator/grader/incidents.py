"""Lab 6's incident check: the learner's agent.py against real incidents it has not seen.

The incidents are the platform's own (opslab.incidents: the engine injects them into the shop under
load, and the incident scorer scores them), taken from a held-out folder: the instructor's
(OPSLAB_INCIDENTS_HELDOUT) or, in a self-paced learner's copy, the grader's heldout/incidents/. The
agent runs as `opslab incident` runs any remediator: in the run's sandbox, on the deterministic
model, with nothing but the incident's toolbox over MCP (acting as the incident's least-privilege
responder, through the platform's action policy) and its plan policy. An incident owns the shop
while it runs, so the check runs them one after another, faults first: an agent that fails one
stops the check there, with that incident's reasons.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opslab.agent import remediation
from opslab.grading.fixtures import LearnerError, learner_file, python, run_learner
from opslab.grading.sandbox import Sandbox
from opslab.incidents import engine
from opslab.incidents.catalog import HELDOUT_ENV, Incident, catalog
from opslab.incidents.scorer import Score
from opslab.primitives.readiness import wait_for
from opslab.settings import Settings

HELDOUT = Path(__file__).resolve().parent / "heldout" / "incidents"
HEALTHY_WITHIN = 180.0
"""How long an incident waits for the shop to be healthy before it starts (after the one before)."""
AGENT_SECONDS = 240.0
"""The agent's --max-seconds on one incident; it is stopped 30 s after that."""
QUIET_AFTER = 60.0
"""The agent's --quiet-after: how long nothing must fire before a quiet shift is called quiet."""
BUSY_WAIT = 600.0
"""How long an incident waits for another one (another grading's) to finish before the check fails."""
RESPONDER = "agent:yours"
"""How the runs appear in `opslab incident scoreboard`."""


MAX_INCIDENTS = 4
"""The most held-out incidents the check's time limit fits (about 7 minutes each at worst)."""


class ShopUnavailable(Exception):
    """The platform's shop could not take an incident (busy, or not healthy): not the learner's doing,
    so the check errors with this message instead of failing on the learner's work."""


def heldout_folder() -> Path:
    given = os.environ.get(HELDOUT_ENV, "")
    return Path(given) if given else HELDOUT


def heldout_incidents(root: Path, folder: Path) -> list[Incident]:
    """The held-out incidents, faults first (in name order), then the quiet ones."""
    found = [i for i in catalog(root, folder) if i.held_out]
    return sorted(found, key=lambda i: (i.quiet, i.name))


@dataclass(frozen=True)
class Response:
    incident: Incident
    score: Score
    code: int | None
    """agent.py's exit status; None when it was stopped at its time limit."""
    report: dict[str, Any] = field(default_factory=dict)
    problem: str = ""
    """Why agent.py could not run (missing, stopped at its limit), if it could not."""

    def failures(self) -> list[str]:
        """What is wrong with the response; [] when it is right."""
        name, score = self.incident.name, self.score
        found = f"(your agent: {self.problem or self.outcome()})"
        wrongly = f"{name}: wrong diagnoses submitted ({', '.join(score.wrong_submissions[:3])})"
        if self.incident.quiet:
            if score.actions or score.false_actions:
                return [f"{name} is a quiet shift, yet your agent changed things ({score.actions} actions) {found}"]
            if score.wrong_submissions:
                return [f"{wrongly} on a quiet shift {found}"]
            if self.code != 0 or self.report.get("outcome") != "quiet":
                return [f"{name} is a quiet shift: your agent should exit 0 with outcome quiet {found}"]
            return []
        wrong = []
        if score.wrong_submissions:
            wrong.append(wrongly)
        if not score.mitigated:
            why = "; ".join(score.reasons[:2]) or "the SLIs did not recover"
            wrong.append(f"{name} was not mitigated: {why[:300]}")
        if score.diagnosed < 1.0:
            wrong.append(f"{name}'s diagnosis is {score.diagnosed:.0%} right (every finding, one submission each)")
        if score.deleted or score.harmed:
            wrong.append(f"{name}: your agent deleted or harmed {', '.join([*score.deleted, *score.harmed][:3])}")
        return [f"{'; '.join(wrong)} {found}"] if wrong else []

    def outcome(self) -> str:
        said = str(self.report.get("outcome") or "no report.json")
        why = str(self.report.get("escalation") or "")
        return f"exit {self.code}, outcome {said}" + (f": {why[:160]}" if why else "")


def respond(settings: Settings, incident: Incident, lab_path: Path, sandbox: Sandbox, opa_dir: Path) -> Response:
    """Start ``incident``, run the learner's agent on it, and stop and score it; whatever stops
    this half-way, the incident is undone."""
    agent = learner_file(lab_path, "agent.py")
    sandbox = dataclasses.replace(sandbox, hidden=(*sandbox.hidden, incident.path.parent))  # the answers
    _start(settings, incident)
    code: int | None = None
    problem = ""
    run_dir = sandbox.scratch / f"incident-{incident.name}"
    token_file = sandbox.scratch / f"incident-{incident.name}-mcp-token"
    try:
        with remediation.served_toolbox(settings, token_file) as mcp:
            args = [
                python(), str(agent), "--mcp", mcp, "--token-file", str(token_file), "--run-dir", str(run_dir),
                "--model", "deterministic",
                "--platform-policy", str(remediation.plan_policy(settings)),
                "--max-seconds", str(AGENT_SECONDS), "--quiet-after", str(QUIET_AFTER),
            ]  # fmt: skip
            env = {"PATH": f"{opa_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
            try:
                run = run_learner(args, cwd=lab_path, timeout=AGENT_SECONDS + 30, what="agent.py", sandbox=sandbox,
                                  env=env)  # fmt: skip
                code = run.returncode
            except LearnerError as exc:
                problem = str(exc)
        outcome = engine.stop(settings)
    except BaseException:
        engine.stop(settings, force=True)
        raise
    assert outcome is not None  # a scored stop returns the outcome, or raises
    return Response(incident, outcome.score, code, remediation.read_report(run_dir), problem)


def _start(settings: Settings, incident: Incident) -> None:
    """Start ``incident`` once the shop is free: another grading's incident (`opslab grade
    --jobs 2`) is waited out, up to BUSY_WAIT."""
    deadline = time.monotonic() + BUSY_WAIT
    while True:
        if not wait_for(lambda: engine.load_active(settings) is None, max(0.0, deadline - time.monotonic()), 5.0):
            raise ShopUnavailable(
                f"{incident.name} could not start: another incident held the shop for {BUSY_WAIT:.0f} s "
                "(stop yours with `opslab incident stop`, or grade lab 6 one at a time)"
            )
        try:
            engine.start(settings, incident.name, seed=1, extra=incident.path.parent, time_limit=AGENT_SECONDS + 300,
                         healthy_within=HEALTHY_WITHIN, responder=RESPONDER)  # fmt: skip
            return
        except engine.ShopBusy as exc:
            if time.monotonic() >= deadline:
                raise ShopUnavailable(f"{incident.name} could not start: {exc} ({exc.fix})") from None
            # another grading started one first: once its record is saved, wait it out like any other
            wait_for(lambda: engine.load_active(settings) is not None, 10.0, 0.5)
        except engine.IncidentError as exc:
            raise ShopUnavailable(f"{incident.name} could not start: {exc} ({exc.fix})") from None


@contextlib.contextmanager
def shop_to_ourselves(settings: Settings) -> Iterator[None]:
    """Hold the platform's shop for one grading's incidents: another lab 6 grading on the same
    platform (`opslab grade --jobs 2`) waits until this one is done, up to BUSY_WAIT, instead of
    interleaving its incidents with ours. The lock goes with the process, however it ends."""
    lock = engine.folder(settings) / "grading.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as handle:

        def taken() -> bool:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        if not wait_for(taken, BUSY_WAIT, 5.0):
            raise ShopUnavailable(
                f"another lab 6 grading held the shop for {BUSY_WAIT:.0f} s: grade lab 6 one at a time"
            )
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
