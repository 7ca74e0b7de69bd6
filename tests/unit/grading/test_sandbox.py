"""Where a grading run's learner programs write: a scratch directory the runner makes and removes,
short enough for the Unix sockets programs bind in their TMPDIR (Terraform's provider plugins do)
however deep the run directory is. No platform is needed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import psutil

from opslab import settings as settings_module
from opslab.grading.labs import find_lab
from opslab.grading.runner import grade
from opslab.grading.sandbox import SCRATCH_OWNER, SOCKET_PATH_MAX, SOCKET_ROOM, new_scratch, sweep_scratch

GRADER = '''
from pathlib import Path

from opslab.grading.fixtures import python, run_learner
from opslab.grading.rubric import check

pytest_plugins = ["opslab.grading.fixtures"]

BIND = """
import os, socket, tempfile
path = os.path.join(tempfile.gettempdir(), "plugin1234567890")
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path)
print(tempfile.gettempdir())
"""


@check(points=1, section="Programs", hint="-", timeout=30)
def test_a_program_binds_a_socket_in_its_tmpdir(lab_path, scratch, sandbox):
    """a learner program can bind a Unix socket in its TMPDIR"""
    (lab_path / "scratch-was").write_text(str(scratch))
    done = run_learner([python(), "-c", BIND], cwd=lab_path, timeout=20, what="bind", sandbox=sandbox)
    assert done.returncode == 0, done.tail()
'''


def test_a_scratch_directory_is_private_and_leaves_room_for_sockets() -> None:
    scratch = new_scratch("g1234567")
    try:
        assert scratch.stat().st_mode & 0o777 == 0o700
        assert len(str(scratch / "tmp")) <= SOCKET_PATH_MAX - SOCKET_ROOM
        assert "g1234567" in scratch.name
    finally:
        shutil.rmtree(scratch)


def test_scratch_left_by_a_killed_grader_is_swept_and_a_live_ones_is_kept() -> None:
    live = new_scratch("glive123")
    dead = new_scratch("gdead123")
    try:
        child = subprocess.Popen([sys.executable, "-c", "pass"])
        child.wait(timeout=30)
        started = psutil.Process().create_time()
        (dead / SCRATCH_OWNER).write_text(f"{child.pid} {started}\n")  # a process that is gone
        assert dead in sweep_scratch()
        assert not dead.exists() and live.exists()
    finally:
        shutil.rmtree(live, ignore_errors=True)
        shutil.rmtree(dead, ignore_errors=True)


def test_a_deep_run_directory_still_lets_programs_bind_sockets_and_its_scratch_goes(
    tiny: tuple[settings_module.Settings, Path], tmp_path: Path
) -> None:
    """The lab 7 failure once seen in CI: under pytest-of-root/pytest-1057/.../runs/<stamp>/scratch/tmp
    Terraform's providers could not bind their plugin socket, and every Terraform check failed."""
    settings, root = tiny
    (root / "labs" / "99-tiny" / "grader" / "test_tiny.py").write_text(GRADER)
    work = root / "solved"
    work.mkdir()
    (work / "README.md").write_text("nothing to build\n")
    deep = tmp_path / ("runs-" + "d" * 70) / ("e" * 40)
    result, run_dir = grade(find_lab(root, 99), settings, path=work, runs_root=deep)
    assert len(str(run_dir / "scratch" / "tmp" / "plugin1234567890")) > SOCKET_PATH_MAX
    assert result.passed, [c.reason for c in result.checks]
    scratch = Path((work / "scratch-was").read_text())
    assert not scratch.exists(), "the runner removes the run's scratch directory"
