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

    def _command(self) -> tuple[list[str], dict[str, str]]:
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
        return args, env

    def start(self) -> LoadRun:
        args, env = self._command()
        with (self.run_dir / "locust.log").open("wb") as log:  # the child keeps its own handle
            # In the run directory (under the state directory): `opslab down` finds it there if it outlives us.
            self.proc = subprocess.Popen(
                args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.run_dir
            )
        return self

    def start_detached(self) -> int:
        """Start the load as a process of its own that outlives the caller (an incident's load lasts
        across commands); its pid. It runs in the run directory, so `opslab down` stops it too, and
        it ends by itself when the load's duration is over."""
        args, env = self._command()
        launcher = 'cd "$1" && shift && setsid "$@" > locust.log 2>&1 < /dev/null & echo $!'
        done = subprocess.run(
            ["sh", "-c", launcher, "sh", str(self.run_dir), *args],
            env=env, capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        return int(done.stdout.strip())

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
