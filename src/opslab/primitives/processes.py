"""Running commands and finding, stopping and reaping processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from opslab.primitives.errors import PrerequisiteMissing


@dataclass(frozen=True)
class Completed:
    """The outcome of a finished command."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def tail(self, lines: int = 5) -> str:
        """The last lines of stderr (or stdout), for an error message."""
        text = (self.stderr or self.stdout).strip().splitlines()
        return " | ".join(line.strip() for line in text[-lines:])


def run(
    args: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
    input_text: str | None = None,
) -> Completed:
    """Run a command to completion, capturing its output, and never hang past ``timeout``.

    A missing program raises PrerequisiteMissing naming it; a timeout kills the command's whole
    process group and reports exit code 124, as `timeout(1)` does.
    """
    argv = [os.fspath(a) for a in args]
    merged = {**os.environ, **env} if env is not None else None
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=merged,
            stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise PrerequisiteMissing(f"program {argv[0]!r} was not found") from exc
    _RUNNING.add(proc.pid)
    try:
        out, err = proc.communicate(input_text, timeout=timeout)
        return Completed(tuple(argv), proc.returncode, out, err)
    except subprocess.TimeoutExpired:
        kill_group(proc.pid)
        out, err = proc.communicate()
        return Completed(tuple(argv), 124, out, err + f"\ntimed out after {timeout:.0f}s")
    finally:
        _RUNNING.discard(proc.pid)


_RUNNING: set[int] = set()
"""Process groups of commands `run` is waiting for (each runs in a session of its own)."""


def kill_running_commands() -> None:
    """Kill every command `run` is waiting for, with its whole process group.

    A long-running program that is stopped while a command runs calls this from its signal
    handler: the command's own session keeps it out of the stop signal's reach otherwise, and it
    (and, say, the plugins Terraform started) would outlive the program.
    """
    for pid in list(_RUNNING):
        kill_group(pid)


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to the process group led by ``pid``, ignoring one that is already gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def processes_mentioning(marker: str) -> list[psutil.Process]:
    """Every live process whose command line contains ``marker`` (a path unique to one platform)."""
    me = os.getpid()
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if proc.info["pid"] == me or proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            cmdline = proc.info["cmdline"] or []
            if any(marker in part for part in cmdline):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def terminate(procs: Iterable[psutil.Process], *, grace: float = 10.0) -> list[int]:
    """SIGTERM each process (and its children), SIGKILL what is left after ``grace`` seconds.

    Returns the pids that were signalled.
    """
    everything: dict[int, psutil.Process] = {}
    for proc in procs:
        try:
            for child in proc.children(recursive=True):
                everything[child.pid] = child
            everything[proc.pid] = proc
        except psutil.NoSuchProcess:
            continue
    for proc in everything.values():
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    _, alive = psutil.wait_procs(list(everything.values()), timeout=grace)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)
    return sorted(everything)


def pid_alive(pid: int) -> bool:
    """Whether a (non-zombie) process with this pid exists."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
