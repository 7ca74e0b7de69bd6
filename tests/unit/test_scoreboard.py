"""The scoreboard reads scored runs: each responder's newest run of each incident, a table that says
what was not mitigated, and a plot; runs cut short are left off, not fatal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from opslab.agent import remediation
from opslab.bench import incidents as bench_incidents
from opslab.incidents import scoreboard
from opslab.incidents.scorer import Score
from tests.unit.test_cli import opslab


def scored(runs: Path, name: str, incident: str, responder: str, *, started: float, ttm: float | None) -> Path:
    run = runs / name
    run.mkdir(parents=True)
    score = Score(points=95 if ttm else 30, detected=True, time_to_detect=20.0, alerted_after=15.0, localised=1.0,
                  diagnosed=1.0, mitigated=ttm is not None, time_to_mitigate=ttm, actions=1)  # fmt: skip
    (run / "score.json").write_text(json.dumps(score.as_dict()))
    scoreboard.record_run(run, incident, responder, started, seed=1)
    return run


def test_each_responder_s_newest_run_of_each_incident_is_on_the_board(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    scored(runs, "r1", "inc-01", "oracle", started=100.0, ttm=80.0)
    scored(runs, "r2", "inc-01", "oracle", started=200.0, ttm=45.0)  # newer: replaces r1
    scored(runs, "r3", "inc-01", "none", started=150.0, ttm=None)
    scored(runs, "r4", "inc-02", "agent:mine", started=300.0, ttm=60.0)
    (runs / "r5").mkdir()
    (runs / "r5" / "run.json").write_text("{}")  # cut short: no score
    rows = scoreboard.collect(runs)
    assert [(r.incident, r.responder, r.time_to_mitigate) for r in rows] == [
        ("inc-01", "none", None),
        ("inc-01", "oracle", 45.0),
        ("inc-02", "agent:mine", 60.0),
    ]
    assert scoreboard.responders(rows) == ["none", "oracle", "agent:mine"]
    assert scoreboard.cell(rows[0]) == "not mitigated (30 pts)"
    assert scoreboard.cell(rows[1]) == "45 s (95 pts, 1 actions)"
    png = scoreboard.plot(rows, tmp_path / "board.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_command_prints_the_table_and_writes_the_plot(tmp_path: Path) -> None:
    state = tmp_path / "state"
    scored(state / "runs", "r1", "inc-01", "oracle", started=100.0, ttm=45.0)
    scored(state / "runs", "r2", "inc-01", "none", started=100.0, ttm=None)
    result = opslab("incident", "scoreboard", "--out", str(tmp_path / "b.png"), state=state)
    assert result.returncode == 0, result.stderr
    assert "no remediation" in result.stdout and "not mitigated" in result.stdout and "45 s" in result.stdout
    assert (tmp_path / "b.png").is_file()
    empty = opslab("incident", "scoreboard", state=tmp_path / "empty")
    assert empty.returncode == 0 and "no scored incident yet" in empty.stdout


def test_a_responder_name_is_checked(tmp_path: Path) -> None:
    result = opslab("incident", "start", "inc-01", "--responder", "me; rm -rf /", state=tmp_path)
    assert result.returncode != 0 and "--responder" in result.stderr and "Traceback" not in result.stderr


def test_each_remediator_and_model_gets_a_column_of_its_own() -> None:
    assert remediation.responder("reference") == "agent:reference"
    assert remediation.responder("yours", "openai:http://127.0.0.1:8000/v1", "llama3") == "agent:yours/llama3"
    assert remediation.responder("reference", "replay:run.jsonl") == "agent:reference/replay"
    assert remediation.responder("reference", "deterministic", "ignored") == "agent:reference"
    assert remediation.model_args() == ["--model", "deterministic"]
    assert remediation.model_args("openai:http://127.0.0.1:8000/v1", "llama3", "key") == [
        "--model", "openai:http://127.0.0.1:8000/v1", "--model-name", "llama3", "--key-file", "key",
    ]  # fmt: skip


def test_the_bench_refuses_an_endpoint_without_its_model_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        bench_incidents.main(["--model", "openai:http://127.0.0.1:8000/v1", "--no-record"])
    assert stopped.value.code == 2
    assert "needs --model-name" in capsys.readouterr().err
