"""The session's side of the incident world (tests/integration/incident_world.py), with a stand-in
process for the world: results are handed over as written, a world that ends or runs late without a
result fails its test and every later one at once, and closing it stops whatever runs from its
state directory."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from opslab.grading.rubric import Grade
from tests.integration import incident_world
from tests.integration.incident_world import World


def _world(tmp_path: Path, program: str, incidents: list[str]) -> World:
    world = World(tmp_path / "world", 2500, incidents)
    world.state.mkdir()
    world.results.mkdir()
    world.started = time.time()
    world.proc = subprocess.Popen([sys.executable, "-c", program], cwd=world.state)
    return world


def _write(world: World, name: str, result: dict[str, object]) -> None:
    (world.results / f"{name}.json").write_text(json.dumps(result))


def test_a_written_result_is_handed_over(tmp_path: Path) -> None:
    world = _world(tmp_path, "import time; time.sleep(60)", ["inc-01", "inc-02"])
    try:
        _write(world, "inc-01", {"score": {"mitigated": True}})
        assert world.result("inc-01") == {"score": {"mitigated": True}}
    finally:
        world.close()
    assert world.proc is not None and world.proc.poll() is not None


def test_a_world_that_ends_without_a_result_fails_that_test_and_every_later_one(tmp_path: Path) -> None:
    world = _world(tmp_path, "print('platform did not start: port 14879 is in use')", ["inc-01", "inc-02"])
    world.log.write_text("platform did not start: port 14879 is in use\n")
    with pytest.raises(AssertionError, match=r"stopped without a result for inc-01:\n.*port 14879"):
        world.result("inc-01")
    _write(world, "inc-02", {"score": {}})  # too late: the world is known to be broken
    with pytest.raises(AssertionError, match="without a result for inc-01"):
        world.result("inc-02")


def test_an_overdue_world_is_stopped_and_fails_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(incident_world, "PER_INCIDENT", 0.5)
    world = _world(tmp_path, "import time; time.sleep(60)", ["inc-01", "inc-02"])
    world.log.write_text("inc-01 still running\n")
    _write(world, "inc-01", {"score": {}})
    assert world.result("inc-01") == {"score": {}}
    began = time.monotonic()
    with pytest.raises(AssertionError, match="overdue without a result for inc-02"):
        world.result("inc-02")
    assert time.monotonic() - began < 5
    assert world.proc is not None and world.proc.poll() is not None, "an overdue world is stopped"


def test_closing_stops_what_runs_from_the_state_directory(tmp_path: Path) -> None:
    world = _world(tmp_path, "import sys", ["inc-01"])
    assert world.proc is not None
    world.proc.wait(10)
    # a load the world started in a session of its own, still running after the world ended
    load = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", str(world.state / "runs" / "incident-1")],
        start_new_session=True,
    )
    try:
        world.close()
        assert load.wait(15) is not None
    finally:
        if load.poll() is None:
            load.kill()
    assert not psutil.pid_exists(load.pid) or psutil.Process(load.pid).status() == psutil.STATUS_ZOMBIE


def test_a_grading_after_the_incidents_is_handed_over_as_a_grade_and_has_a_gradings_time(tmp_path: Path) -> None:
    world = _world(tmp_path, "import time; time.sleep(60)", ["inc-01", "6:solution"])
    try:
        _write(world, "inc-01", {"score": {}})
        assert world._deadline("6:solution") == pytest.approx(
            (world.results / "inc-01.json").stat().st_mtime + incident_world.PER_GRADING
        )
        grade = Grade(lab="06-ai-remediator", path="solution", checks=[], pass_mark=0.8)
        incident_world.result_file(world.results, "6:solution").write_text(grade.to_json())
        assert (world.results / "6-solution.json").is_file()
        assert world.grading("6:solution").lab == "06-ai-remediator"
    finally:
        world.close()
