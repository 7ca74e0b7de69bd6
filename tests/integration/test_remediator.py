"""Lab 6's reference remediator on the real platform, end to end: a hidden fault under load, the
alert, the agent (a separate program) reading through the MCP toolbox with the deterministic model,
its plan checked by schema and by the plan policy in `opa eval`, the action through the policy
server, the verification query, the submission; then the incident scorer's verdict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from opslab.agent import mcp_server, model_server
from opslab.agent.session import incident_toolbox
from opslab.incidents import engine
from opslab.runtime.lifecycle import Platform

pytestmark = [pytest.mark.platform, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / "solutions" / "06-ai-remediator" / "agent.py"


@pytest.fixture
def incident_platform(platform: Platform) -> Iterator[Platform]:
    yield platform
    engine.stop(platform.settings, force=True)


def remediate(platform: Platform, name: str, tmp_path: Path, *extra: str) -> tuple[int, dict[str, object], str]:
    settings = platform.settings
    active = engine.start(settings, name, seed=1, time_limit=600, healthy_within=180, responder="agent:reference")
    token_file = Path(active.run_dir) / "mcp-token"
    token = mcp_server.new_token(token_file)
    toolbox = incident_toolbox(settings)
    opa = platform.ctx.toolchain.require("opa")
    env = {
        **os.environ,
        "PATH": f"{opa.parent}{os.pathsep}{os.environ['PATH']}",
        "OPSLAB_PLAN_POLICY": str(ROOT / "platform" / "policy" / "plan.rego"),
    }
    try:
        with model_server.served(mcp_server.app(toolbox, token)) as port:
            done = subprocess.run(
                [sys.executable, str(AGENT), "--mcp", f"http://127.0.0.1:{port}/mcp", "--token-file", str(token_file),
                 "--run-dir", str(tmp_path), "--quiet-after", "30", "--max-seconds", "400", *extra],
                capture_output=True, text=True, timeout=480, env=env, check=False,
            )  # fmt: skip
    finally:
        toolbox.close()
    report = json.loads((tmp_path / "report.json").read_text())
    return done.returncode, report, done.stderr


def test_the_reference_remediator_mitigates_a_bad_release(incident_platform: Platform, tmp_path: Path) -> None:
    code, report, stderr = remediate(incident_platform, "inc-01", tmp_path)
    assert code == 0, (stderr, report)
    assert report["outcome"] == "mitigated"
    (step,) = report["steps"]  # type: ignore[misc]
    assert step["tool"] == "rollout_undo" and step["verified"], step
    outcome = engine.stop(incident_platform.settings)
    assert outcome is not None
    assert outcome.score.mitigated and outcome.score.diagnosed == 1.0, outcome.score.reasons


def test_the_reference_remediator_changes_nothing_on_a_quiet_shift(incident_platform: Platform, tmp_path: Path) -> None:
    code, report, stderr = remediate(incident_platform, "inc-10", tmp_path)
    assert code == 0, (stderr, report)
    assert report["outcome"] == "quiet" and report["steps"] == []
    outcome = engine.stop(incident_platform.settings, settle_wait=0)
    assert outcome is not None and outcome.score.actions == 0 and outcome.score.false_actions == 0
