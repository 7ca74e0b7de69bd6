"""Running a remediator program (lab 6's agent.py: the reference, or a learner's) on the running
incident, the way `opslab demo` and the tests do: the toolbox served over MCP with a fresh token (a
0600 file), OPA on the program's PATH for its plan policy, and its output passed on line by line.
The program gets nothing else: no kubeconfig, no Prometheus address."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opslab.agent import mcp_server, model_server
from opslab.agent.session import incident_toolbox
from opslab.incidents import engine
from opslab.settings import Settings

REFERENCE = Path("solutions") / "06-ai-remediator" / "agent.py"
"""The reference remediator, relative to the repository."""


def responder(agent: str, model: str = "deterministic", model_name: str = "") -> str:
    """The scoreboard's name for a remediator run: ``agent:<agent>``, and the model when it is not the
    deterministic one (``agent:reference/llama3`` for an OpenAI-compatible endpoint serving llama3,
    ``agent:yours/replay`` for a recorded transcript), so each model gets a column of its own."""
    if model == "deterministic":
        return f"agent:{agent}"
    kind = model.split(":", 1)[0]
    return f"agent:{agent}/{model_name or kind}"


def model_args(model: str = "deterministic", model_name: str = "", key_file: str = "") -> list[str]:
    """agent.py's arguments for its model: --model, and --model-name and --key-file when given."""
    given = (("--model", model), ("--model-name", model_name), ("--key-file", key_file))
    return [part for flag, value in given if value for part in (flag, value)]


@dataclass(frozen=True)
class Remediation:
    code: int
    """The program's exit: 0 mitigated or quiet, 3 escalated, 2 bad input; -9 when it was stopped."""
    report: dict[str, Any]
    """Its report.json ({} when it wrote none)."""
    output: str
    """Its last lines of output."""


@contextlib.contextmanager
def served_toolbox(settings: Settings, token_file: Path) -> Iterator[str]:
    """The running incident's toolbox served over MCP behind a fresh token written to ``token_file``
    (0600, removed after); yields the MCP URL a remediator connects to."""
    token = mcp_server.new_token(token_file)
    toolbox = incident_toolbox(settings)
    try:
        with model_server.served(mcp_server.app(toolbox, token)) as port:
            yield f"http://127.0.0.1:{port}/mcp"
    finally:
        toolbox.close()
        token_file.unlink(missing_ok=True)


def read_report(run_dir: Path) -> dict[str, Any]:
    """A remediator's report.json ({} when it wrote none, or nothing readable)."""
    report_file = run_dir / "report.json"
    try:
        report = json.loads(report_file.read_text()) if report_file.is_file() else {}
    except (OSError, ValueError):
        report = {}
    return report if isinstance(report, dict) else {}


def run(
    settings: Settings,
    opa: Path,
    agent: Path,
    run_dir: Path,
    args: Sequence[str] = (),
    *,
    timeout: float = 480,
    on_line: Callable[[str], None] = lambda _: None,
) -> Remediation:
    """Run ``agent`` on the running incident with ``args`` (after --mcp, --token-file and --run-dir)."""
    active = engine.require_active(settings)
    token_file = Path(active.run_dir) / "mcp-token"
    env = {
        **os.environ,
        "PATH": f"{opa.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "OPSLAB_PLAN_POLICY": str(plan_policy(settings)),
        "PYTHONUNBUFFERED": "1",
    }
    tail: list[str] = []
    with served_toolbox(settings, token_file) as mcp:
        command = [
            sys.executable, str(agent), "--mcp", mcp, "--token-file", str(token_file), "--run-dir", str(run_dir), *args,
        ]  # fmt: skip
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
            cwd=settings.paths.root, start_new_session=True,
        ) as proc:  # fmt: skip
            timer = threading.Timer(timeout, lambda: _stop(proc))
            timer.start()
            try:
                assert proc.stdout is not None
                for line in proc.stdout:
                    on_line(line.rstrip("\n"))
                    tail = [*tail[-39:], line.rstrip("\n")]
                code = proc.wait()
            finally:
                timer.cancel()
                _stop(proc)
    return Remediation(code, read_report(run_dir), "\n".join(tail))


def plan_policy(settings: Settings) -> Path:
    """The platform's plan policy (plan.rego), which every remediator's plan is checked against."""
    return settings.paths.platform / "policy" / "plan.rego"


def _stop(proc: subprocess.Popen[str]) -> None:
    """Stop the program and anything it started (its own session), if it still runs."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
