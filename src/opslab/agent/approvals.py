"""The approval gate: a plan step above the stated risk waits for a human's yes or no.

The agent asks (``Gate.ask``), which writes ``<step>.request.json`` into the run's ``approvals/``
folder; a human answers with ``opslab agent approve RUN STEP`` or ``opslab agent reject RUN STEP
--reason ...``, which writes ``<step>.answer.json`` (atomically); the agent waits for the answer
(``Gate.wait``) up to its timeout, and no answer in time is a no. Every file is mode 0600; a step
is answered once.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opslab.primitives.errors import ConfigError
from opslab.primitives.files import write_private

STEP_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


@dataclass(frozen=True)
class Verdict:
    approved: bool
    by: str
    reason: str


class Gate:
    def __init__(self, run_dir: Path) -> None:
        self.folder = run_dir / "approvals"

    def _file(self, step: str, kind: str) -> Path:
        if not STEP_ID.match(step):
            raise ConfigError(f"step id {step!r} is not valid", fix="use lower-case letters, digits and dashes")
        return self.folder / f"{step}.{kind}.json"

    def ask(self, step: str, action: dict[str, Any], reasons: list[str]) -> None:
        """Ask a human to approve ``action`` (the plan's step), saying why approval is needed."""
        request = {"step": step, "action": action, "reasons": reasons, "asked": time.time()}
        self.folder.mkdir(parents=True, exist_ok=True)
        write_private(self._file(step, "request"), json.dumps(request, indent=1) + "\n")

    def pending(self) -> list[dict[str, Any]]:
        """The requests nobody has answered yet, oldest first."""
        if not self.folder.is_dir():
            return []
        requests = [json.loads(p.read_text()) for p in sorted(self.folder.glob("*.request.json"))]
        waiting = [r for r in requests if not self._file(r["step"], "answer").exists()]
        return sorted(waiting, key=lambda r: r["asked"])

    def answer(self, step: str, approved: bool, reason: str = "", by: str = "") -> Verdict:
        """Record a human's answer to a pending request."""
        if not self._file(step, "request").is_file():
            raise ConfigError(f"no approval was asked for step {step!r}", fix="see `opslab agent approvals RUN`")
        verdict = Verdict(approved=approved, by=by or getpass.getuser(), reason=reason)
        payload = {"approved": verdict.approved, "by": verdict.by, "reason": verdict.reason, "at": time.time()}
        if not _write_once(self._file(step, "answer"), json.dumps(payload) + "\n"):
            raise ConfigError(f"step {step!r} has been answered already", fix="an answer is final")
        return verdict

    def wait(self, step: str, timeout: float, poll: float = 0.25) -> Verdict:
        """The answer to ``step``'s request, waiting up to ``timeout`` seconds; none in time is a no."""
        answer = self._file(step, "answer")
        deadline = time.monotonic() + timeout
        while not answer.is_file():
            if time.monotonic() >= deadline:
                return Verdict(approved=False, by="timeout", reason=f"no answer within {timeout:.0f} s")
            time.sleep(poll)
        data = json.loads(answer.read_text())
        return Verdict(approved=bool(data["approved"]), by=str(data["by"]), reason=str(data.get("reason", "")))


def _write_once(path: Path, text: str) -> bool:
    """Create ``path`` (mode 0600) with ``text`` unless it exists; complete or absent, never partial.
    False when it existed (two people answering at once: the first answer stands)."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        return True
    finally:
        Path(temporary).unlink()
