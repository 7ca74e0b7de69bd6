"""Commands started by `run` do not outlive a program that is stopped while they run."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil

PROGRAM = textwrap.dedent(
    """
    import signal, sys
    from opslab.primitives.processes import kill_running_commands, run

    def stopped(signum, frame):
        kill_running_commands()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stopped)
    # A command whose own child (like a Terraform provider plugin) runs in the command's group.
    run(["sh", "-c", "sleep 120 & echo $! > {pidfile}; wait"], timeout=120)
    """
)


def wait_for_file(path: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.05)
    raise AssertionError(f"{path} was not written within {timeout} s")


def test_a_stopped_program_takes_its_running_command_and_its_children_along(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    program = subprocess.Popen([sys.executable, "-c", PROGRAM.format(pidfile=pidfile)])
    grandchild = psutil.Process(int(wait_for_file(pidfile, 20)))
    assert grandchild.is_running()
    program.send_signal(signal.SIGTERM)
    assert program.wait(10) == 0
    _gone, alive = psutil.wait_procs([grandchild], timeout=5)
    assert not alive, f"the command's child {grandchild.pid} outlived the stopped program"


def test_without_the_handler_the_child_would_be_orphaned(tmp_path: Path) -> None:
    """The control: the command's own session really does keep it out of the stop signal's reach."""
    pidfile = tmp_path / "grandchild.pid"
    unguarded = PROGRAM.replace("signal.signal(signal.SIGTERM, stopped)", "")
    program = subprocess.Popen([sys.executable, "-c", unguarded.format(pidfile=pidfile)])
    grandchild = psutil.Process(int(wait_for_file(pidfile, 20)))
    try:
        program.send_signal(signal.SIGTERM)
        program.wait(10)
        time.sleep(0.5)
        assert grandchild.is_running()
    finally:
        grandchild.kill()
