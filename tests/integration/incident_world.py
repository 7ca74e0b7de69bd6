"""A world of its own for the oracle: a second platform, in a separate process, on which the oracle
responds to the incidents of the catalog one after another while the session's own platform runs
the other tests.

An incident owns its platform while it runs (one fault at a time, load on the whole shop, a node
fault felt by every pod on the node), so the catalog cannot share the session's platform with the
scenarios and the lab gradings. The world is a separate process with a platform of its own (state in
the session's temporary directory, ports shifted by OFFSET past the session's): nothing it does
(environment, threads, the interpreter's lock) reaches the session. For each incident it writes
``<name>.json`` (the oracle's findings and actions, the scorer's verdict, the run directory) into its
results folder; the tests read and judge those.

Then it grades the lab checks that own the shop (``check(owns_shop=True)``: lab 6's agent on held-out
incidents) for each grading key it was given (``6:solution``, ``6:starter``, ``6:<mutant>``), one
after another, and writes each grade as ``<key>.json`` (the colon a dash).

    python -m tests.integration.incident_world --state DIR --offset N --results DIR inc-01 ... 6:solution ...
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from opslab.agent.session import oracle_response
from opslab.grading import isolation
from opslab.grading.rubric import Grade
from opslab.incidents import engine
from opslab.primitives.processes import kill_group, processes_mentioning, terminate
from opslab.primitives.readiness import wait_for
from opslab.runtime.lifecycle import Platform
from opslab.settings import Settings
from tests.labs.support import all_tracks
from tests.platforms import OWNER_FILE, make_platform, shifted_settings

OFFSET = 1500
"""The world's ports, past the session's (PORT_OFFSET): 1,500 misses the session's, the lifecycle
tests' (+1,000) and the benches' (3,000) port sets, since no two base ports differ by 500, 1,500 or
2,500."""
HEALTHY_WITHIN = 180.0
"""Each incident starts from a healthy shop: the time the one before it has to be undone."""
RESPONSE_TIME = 300.0
"""How long the oracle may respond to one incident."""
PER_INCIDENT = 60.0 + HEALTHY_WITHIN + RESPONSE_TIME + engine.SETTLE_WAIT
"""The most one incident can take in the world (start, response, settling, stop)."""
START_UP = 300.0
"""The most the world's platform may take to start on a busy machine."""
WAIT = START_UP + PER_INCIDENT
"""The longest a test waits for its incident's result (the world's start-up, then one incident)."""
PER_GRADING = 2100.0
"""The most one grading of shop checks can take in the world (lab 6's check allows 1,800 s)."""


def is_grading(item: str) -> bool:
    """A grading key (``6:solution``), not an incident's name."""
    return ":" in item


def allowance(item: str) -> float:
    return PER_GRADING if is_grading(item) else PER_INCIDENT


def result_file(results: Path, item: str) -> Path:
    return results / f"{item.replace(':', '-')}.json"


def grade_shop_checks(platform: Platform, key: str, work: Path) -> dict[str, Any]:
    """Grade ``key``'s shop checks on the world's platform: the Grade, as JSON."""
    label, what = key.split(":", 1)
    track = next(t for t in all_tracks() if t.label == label)
    result = track.grade_in_world(platform, what, work / key.replace(":", "-"))
    graded: dict[str, Any] = json.loads(result.to_json())
    return graded


def respond(settings: Settings, name: str) -> dict[str, Any]:
    """One incident, start to stop, with the oracle responding: what the tests judge."""
    run, outcome = oracle_response(
        settings, name, healthy_within=HEALTHY_WITHIN, within=RESPONSE_TIME, time_limit=600, quiet_after=30
    )
    return {
        "findings": run.findings,
        "actions": run.actions,
        "quiet": run.quiet,
        "escalations": run.escalations,
        "score": outcome.score.as_dict(),
        "run_dir": str(outcome.run_dir),
        "responder": json.loads((outcome.run_dir / "run.json").read_text())["responder"],
        "report": (outcome.run_dir / "report.html").is_file(),
        "evidence": (outcome.run_dir / "evidence.json").is_file(),
    }


def _write(results: Path, name: str, result: dict[str, Any]) -> None:
    done = result_file(results, name)
    partial = done.with_suffix(".partial")
    partial.write_text(json.dumps(result, indent=1) + "\n")
    partial.replace(done)


def _stopped(signum: int, _frame: FrameType | None) -> None:
    """The first SIGTERM unwinds through `finally` (the incident undone, the platform stopped); any
    later one is ignored, so it cannot cut that short (the session's SIGKILL after 180 s still can)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(128 + signum)


def _stop_with_the_session(owner: str) -> None:
    """SIGTERM this process when the session that started it (``owner``, its isolation.owner_token)
    is gone, even killed with SIGKILL, even before this process got this far: no world outlives its
    session."""

    def watch() -> None:
        while isolation.owner_alive(owner):
            time.sleep(2)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="session-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", type=Path, required=True, help="the world platform's state directory")
    parser.add_argument("--offset", type=int, required=True, help="added to every port of the platform")
    parser.add_argument("--results", type=Path, required=True, help="where <incident>.json is written")
    parser.add_argument("--owner", required=True, help="the session's isolation.owner_token: stop when it is gone")
    parser.add_argument("items", nargs="+", help="incidents, then grading keys (6:solution)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stopped)
    _stop_with_the_session(args.owner)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args.results.mkdir(parents=True, exist_ok=True)
    platform = make_platform(shifted_settings(args.state, args.offset))
    try:
        platform.up()
        for name in args.items:
            began = time.monotonic()
            try:  # a stop half-way (SIGTERM, the session gone) undoes the incident and goes on to `down`
                if is_grading(name):
                    result = grade_shop_checks(platform, name, args.state.parent / f"{args.state.name}-gradings")
                else:
                    result = respond(platform.settings, name)
            except Exception:
                result = {"error": traceback.format_exc()}
            result["seconds"] = round(time.monotonic() - began, 1)
            _write(args.results, name, result)
            logging.info("%s done in %.0f s", name, result["seconds"])
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a stop asked for now must not cut `down` short either
        platform.down(purge=True)
    return 0


@dataclass
class World:
    """The session's side: starts the world process and hands each incident's result to its test."""

    state: Path
    offset: int
    items: list[str]
    """The incidents, then the grading keys, in the order the world works through them."""
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    broken: str = ""
    """Why the world gave no result in time: every later result fails at once with it."""

    @property
    def results(self) -> Path:
        return self.state.parent / f"{self.state.name}-results"

    @property
    def log(self) -> Path:
        return self.state.parent / f"{self.state.name}.log"

    def start(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        owner = isolation.owner_token()
        (self.state / OWNER_FILE).write_text(owner + "\n")  # not stale while the session runs
        command = [sys.executable, "-m", "tests.integration.incident_world", "--state", str(self.state),
                   "--offset", str(self.offset), "--results", str(self.results), "--owner", owner,
                   *self.items]  # fmt: skip
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        self.started = time.time()
        with self.log.open("wb") as log:
            # Run from the state directory, like the platform's own programs: a killed session's
            # world is then found and stopped by the next session (stop_stale_test_platforms).
            self.proc = subprocess.Popen(
                command, cwd=self.state, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def _deadline(self, name: str) -> float:
        """When ``name``'s result is overdue (wall-clock time): one incident's time after the one
        before it was written (or after the world's start-up)."""
        index = self.items.index(name)
        before = result_file(self.results, self.items[index - 1]) if index else None
        if before is not None and before.is_file():
            return before.stat().st_mtime + allowance(name)
        return self.started + START_UP + sum(allowance(item) for item in self.items[: index + 1])

    def result(self, name: str) -> dict[str, Any]:
        """``name``'s result, once the world has it; an AssertionError with the world's log if the
        world stopped without one or is overdue (then it is stopped: the tests after fail at once)."""
        proc = self.proc
        assert proc is not None, "the world was not started"
        assert not self.broken, self.broken
        done = result_file(self.results, name)
        within = max(0.0, self._deadline(name) - time.time())
        ready = wait_for(lambda: done.is_file() or proc.poll() is not None, within, interval=2.0)
        if not done.is_file():
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])
            self.broken = f"the incident world {'stopped' if ready else 'is overdue'} without a result for {name}"
            self.close()
            raise AssertionError(f"{self.broken}:\n{tail}")
        result: dict[str, Any] = json.loads(done.read_text())
        return result

    def grading(self, key: str) -> Grade:
        """The grade of ``key``'s shop checks, once the world has it (like ``result``)."""
        result = self.result(key)
        assert "error" not in result, result.get("error")
        return Grade.from_json(json.dumps(result))

    def close(self) -> None:
        """Stop the world: SIGTERM undoes its incident and stops its platform (a world already
        stopping its platform finishes that); SIGKILL after 180 s. Then every process still running
        from its state directory (its platform, a load it started) is stopped, however it ended."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(180)
            except subprocess.TimeoutExpired:
                kill_group(self.proc.pid)
                self.proc.wait(10)
        terminate(processes_mentioning(str(self.state)), grace=10)


if __name__ == "__main__":
    sys.exit(main())
