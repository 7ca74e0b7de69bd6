"""The sandbox learner programs run in while they are graded.

A learner's program (a drain tool, an operator, an exporter) runs with:
- a scrubbed environment: PATH, a scratch HOME and TMPDIR, the locale, the endpoints its lab
  needs, and KUBECONFIG pointing at a least-privilege token of the grading run; nothing else of
  the grader's environment (no OPSLAB_KUBECONFIG, no OPSLAB_STATE_DIR);
- when bubblewrap works here (``bwrap``, from opslab's toolchain): a mount namespace in which the
  whole file system is read-only, the platform's state directory (admin kubeconfig, certificates,
  etcd data, the supervisor's socket) and the home directory are empty, /tmp is private, and only
  the scratch directory is writable; own PID, IPC and UTS namespaces, no capabilities, and it dies
  with the grader. The network is shared: learner programs talk to the platform on 127.0.0.1.

Without bubblewrap (no user namespaces on this machine) the program still gets the scrubbed
environment and the least-privilege kubeconfig; ``Sandbox.describe()`` says which applies.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from opslab.primitives.errors import ConfigError

SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
SOCKET_PATH_MAX = 107
"""The longest path a Unix socket can bind to on Linux (sun_path is 108 bytes with its NUL)."""
SOCKET_ROOM = 24
"""What a program adds to TMPDIR for its sockets: Terraform's provider plugins bind
TMPDIR/plugin<10 digits>; a TMPDIR longer than SOCKET_PATH_MAX - SOCKET_ROOM breaks them."""
SANDBOX_NOTE = "sandbox.txt"
"""The file in a run directory that says how the run's learner programs were confined."""


@functools.cache
def bwrap_works(bwrap: str) -> str:
    """ "" if ``bwrap`` can make a sandbox here, else why not (one line)."""
    try:
        probe = subprocess.run(
            [bwrap, "--ro-bind", "/", "/", "--unshare-user", "--unshare-pid", "--proc", "/proc", "--", "true"],
            capture_output=True, text=True, timeout=20, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap cannot run: {exc}"
    if probe.returncode != 0:
        return f"bwrap cannot create namespaces here: {probe.stderr.strip().splitlines()[-1:] or ['?']}"
    return ""


def find_bwrap(cache: Path | None) -> str | None:
    """bwrap from OPSLAB_BIN_BWRAP, PATH, or opslab's cache (the toolchain puts it there)."""
    explicit = os.environ.get("OPSLAB_BIN_BWRAP")
    if explicit:
        return explicit
    on_path = shutil.which("bwrap")
    if on_path:
        return on_path
    if cache is not None:
        for candidate in sorted(cache.glob("bubblewrap/*/bin/bwrap"), reverse=True):
            if candidate.is_file():
                return str(candidate)
    return None


SCRATCH_PREFIX = "opslab-"
SCRATCH_OWNER = ".owner"
"""The file in a scratch directory naming the process that removes it: "<pid> <start time>"."""


def new_scratch(run_id: str) -> Path:
    """A fresh scratch directory (mode 0700) for the run ``run_id``: in the system's temporary
    directory, not the run directory, so its tmp/ leaves a program room to bind Unix sockets there
    however deep the run directory is (a checkout in a long path, pytest's numbered temp dirs).
    The calling process removes it; those a killed process left behind are removed here."""
    sweep_scratch()
    path = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{run_id}-"))
    tmp = path / "tmp"
    if len(str(tmp)) > SOCKET_PATH_MAX - SOCKET_ROOM:
        shutil.rmtree(path)
        raise ConfigError(
            f"the temporary directory {tempfile.gettempdir()} is too long for Unix sockets in it: "
            "set TMPDIR to a short path such as /tmp"
        )
    me = psutil.Process()
    (path / SCRATCH_OWNER).write_text(f"{me.pid} {me.create_time()}\n")
    return path


def sweep_scratch() -> list[Path]:
    """Remove the scratch directories whose owner process is gone (a grader killed by SIGKILL);
    the removed ones. Directories of running graders, and any without an owner file, stay."""
    removed = []
    for path in Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*"):
        try:
            pid, started = (path / SCRATCH_OWNER).read_text().split()
            alive = psutil.Process(int(pid)).create_time() == float(started)
        except psutil.NoSuchProcess:
            alive = False
        except (OSError, ValueError, psutil.Error):
            continue
        if not alive:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


@dataclass(frozen=True)
class Sandbox:
    """How one grading run starts learner programs."""

    scratch: Path
    """The only writable directory (HOME and TMPDIR); created by the grader, removed with the run."""
    hidden: tuple[Path, ...] = ()
    """Directories that appear empty inside (the platform's state, the home directory)."""
    visible: tuple[Path, ...] = ()
    """Directories shown again (read-only) inside hidden ones: the repository, Python, the toolchain."""
    bwrap: str | None = None
    """The bubblewrap binary, or None to run without a file-system sandbox."""
    environment: dict[str, str] = field(default_factory=dict)
    """Variables every learner program of the run gets (endpoints, KUBECONFIG)."""
    reason: str = ""
    """Why there is no file-system sandbox, when there is none."""

    def describe(self) -> str:
        if self.bwrap:
            return "learner programs run in a bubblewrap sandbox (read-only file system, platform state hidden)"
        return f"learner programs run without a file-system sandbox ({self.reason or 'bwrap not found'})"

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The scrubbed environment: nothing of the grader's own but what is listed here."""
        venv_bin = str(Path(sys.executable).parent)
        env = {
            "PATH": f"{venv_bin}:{SAFE_PATH}",
            "HOME": str(self.scratch),
            "TMPDIR": str(self.scratch / "tmp"),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
        }
        env.update(self.environment)
        env.update(extra or {})
        return env

    def command(self, args: Sequence[str], cwd: Path, *, readable: Sequence[Path] = ()) -> list[str]:
        """``args`` wrapped so they run in the sandbox, in ``cwd`` (shown read-only).

        Mounts are layered by depth, outermost first, so a directory shown inside a hidden one (the
        repository inside the home directory) and a directory hidden inside a shown one (the state
        directory inside the repository) both come out right.
        """
        (self.scratch / "tmp").mkdir(parents=True, exist_ok=True)
        if not self.bwrap:
            return list(args)
        layers: list[tuple[Path, str]] = [(Path("/tmp"), "--tmpfs")]
        layers += [(path, "--tmpfs") for path in self.hidden if path.is_dir()]
        layers += [(path, "--ro-bind") for path in (*self.visible, *readable, cwd) if path.exists()]
        layers.append((self.scratch, "--bind"))
        wrapped = [self.bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        seen: set[tuple[Path, str]] = set()
        for path, how in sorted(layers, key=lambda layer: (len(layer[0].parts), layer[1] == "--bind")):
            if (path, how) in seen:
                continue
            seen.add((path, how))
            wrapped += [how, str(path)] if how == "--tmpfs" else [how, str(path), str(path)]
        wrapped += ["--chdir", str(cwd), "--unshare-user", "--uid", "65534", "--gid", "65534"]
        wrapped += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--die-with-parent", "--new-session", "--"]
        return wrapped + list(args)
