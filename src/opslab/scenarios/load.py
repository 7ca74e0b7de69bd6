"""Running locust headless for a scenario, bounded by the load's duration."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from opslab.primitives.processes import kill_group
from opslab.scenarios.model import Load


class LoadRun:
    """A locust process: started with a shape, stopped (or finished) cleanly, stats in the run dir."""

    def __init__(self, locustfile: Path, load: Load, host: str, run_dir: Path, *, user_rps: float = 1.0) -> None:
        self.locustfile = locustfile
        self.user_rps = user_rps
        self.load = load
        self.host = host
        self.run_dir = run_dir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> LoadRun:
        env = {
            **os.environ,
            "OPSLAB_LOAD_SHAPE": self.load.shape,
            "OPSLAB_LOAD_RPS": str(self.load.rps),
            "OPSLAB_LOAD_DURATION": str(self.load.duration),
            "OPSLAB_LOAD_MIX": self.load.mix,
            "OPSLAB_LOAD_USER_RPS": str(self.user_rps),
        }
        args = [
            sys.executable, "-m", "locust", "-f", str(self.locustfile), "--headless", "--host", self.host,
            "--csv", str(self.run_dir / "locust"), "--only-summary", "--loglevel", "WARNING",
            "--stop-timeout", "2", "--exit-code-on-error", "0",
        ]  # fmt: skip
        with (self.run_dir / "locust.log").open("wb") as log:  # the child keeps its own handle
            self.proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def stop(self, timeout: float = 15) -> int | None:
        """Stop the load (SIGINT lets locust write its final stats), killing it if it lingers."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                kill_group(self.proc.pid)
                self.proc.wait(5)
        return self.proc.returncode
