"""The approval gate: an agent's request waits for a human's answer given on the command line;
no answer in time is a no; an answer is final; every file is private."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from opslab.agent.approvals import Gate
from opslab.primitives.errors import ConfigError
from tests.unit.test_cli import opslab

DRAIN = {"tool": "drain", "arguments": {"node": "node-a-1"}}


def test_the_agent_waits_for_the_human_s_answer_from_the_command_line(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "20261203-010000-incident"
    gate = Gate(run)
    gate.ask("drain-node", DRAIN, ["a drain moves every pod on the node"])
    listed = opslab("agent", "approvals", str(run), state=tmp_path / "state")
    assert listed.returncode == 0, listed.stderr
    assert "drain-node: drain {'node': 'node-a-1'}" in listed.stdout
    assert "needs approval: a drain moves every pod on the node" in listed.stdout
    verdicts = []
    waiter = threading.Thread(target=lambda: verdicts.append(gate.wait("drain-node", timeout=60)))
    waiter.start()
    answered = opslab("agent", "approve", str(run), "drain-node", "--reason", "node is gone", state=tmp_path / "s")
    waiter.join(60)
    assert answered.returncode == 0, answered.stderr
    assert verdicts and verdicts[0].approved and verdicts[0].reason == "node is gone"
    assert gate.pending() == []
    modes = {p.name: p.stat().st_mode & 0o777 for p in (run / "approvals").iterdir()}
    assert set(modes.values()) == {0o600}, modes


def test_no_answer_in_time_is_a_no(tmp_path: Path) -> None:
    gate = Gate(tmp_path)
    gate.ask("scale-up", {"tool": "scale", "arguments": {"service": "cart", "replicas": 9}}, ["more than twice"])
    verdict = gate.wait("scale-up", timeout=0.5, poll=0.05)
    assert not verdict.approved and verdict.by == "timeout"


def test_a_rejection_is_final_and_carries_its_reason(tmp_path: Path) -> None:
    gate = Gate(tmp_path)
    gate.ask("drain-node", DRAIN, ["risky"])
    rejected = opslab("agent", "reject", str(tmp_path), "drain-node", "--reason", "not during peak",
                      state=tmp_path / "state")  # fmt: skip
    assert rejected.returncode == 0, rejected.stderr
    verdict = gate.wait("drain-node", timeout=5)
    assert not verdict.approved and verdict.reason == "not during peak"
    again = opslab("agent", "approve", str(tmp_path), "drain-node", state=tmp_path / "state")
    assert again.returncode != 0 and "has been answered already" in again.stderr
    assert "Traceback" not in again.stderr and len(again.stderr.strip().splitlines()) == 1
    assert not gate.wait("drain-node", timeout=5).approved, "a second answer replaced the first"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("approve", "{run}", "never-asked"), "no approval was asked for step 'never-asked'"),
        (("approve", "{run}", "Bad Step!"), "step id 'Bad Step!' is not valid"),
        (("approve", "no-such-run", "x"), "no run 'no-such-run'"),
        (("reject", "{run}", "drain-node"), "Missing option '--reason'"),
    ],
)
def test_a_wrong_answer_is_one_clear_line(tmp_path: Path, args: tuple[str, ...], says: str) -> None:
    Gate(tmp_path).ask("drain-node", DRAIN, ["risky"])
    result = opslab("agent", *(a.format(run=tmp_path) for a in args), state=tmp_path / "state")
    assert result.returncode != 0 and says in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_answering_a_step_nobody_asked_about_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no approval was asked"):
        Gate(tmp_path).answer("drain-node", True)
