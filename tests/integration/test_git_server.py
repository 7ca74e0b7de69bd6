"""opslab-gitops's Git server as lab 8's pipeline uses it: with --credentials a push needs them, and
--post-receive runs on every push to a repository the push created. No platform is needed."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import psutil

from opslab.grading.fixtures import eventually
from opslab.primitives.ports import free_port
from opslab.primitives.processes import terminate
from opslab.settings import load as load_settings
from opslab.toolchain.resolve import toolchain_for


def git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60, check=False,
                          env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin", "HOME": str(cwd)})  # fmt: skip


def test_a_push_needs_the_credentials_and_runs_the_post_receive_hook(tmp_path: Path) -> None:
    binary = toolchain_for(load_settings()).require("opslab-gitops")
    hook = tmp_path / "hook.sh"
    hook.write_text(f'#!/bin/sh\nwhile read old new ref; do echo "$ref $new" >> {tmp_path / "pushed.log"}; done\n')
    credentials = tmp_path / "credentials"
    credentials.write_text("pipeline:s3cret\n")
    credentials.chmod(0o600)
    port = free_port()
    with (tmp_path / "server.log").open("wb") as log:
        server = subprocess.Popen([str(binary), "git-server", "--dir", str(tmp_path / "repositories"), "--addr",
                                   f"127.0.0.1:{port}", "--post-receive", str(hook), "--credentials", str(credentials)],
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        try:

            def listening() -> bool:
                with socket.socket() as sock:
                    return sock.connect_ex(("127.0.0.1", port)) == 0

            assert eventually(listening, 30), (tmp_path / "server.log").read_text()
            work = tmp_path / "work"
            work.mkdir()
            git(work, "init", "-q", "-b", "main")
            (work / "README.md").write_text("app\n")
            git(work, "add", "-A")
            git(work, "commit", "-q", "-m", "first")
            anonymous = git(work, "push", "-q", f"http://127.0.0.1:{port}/app.git", "main")
            assert anonymous.returncode != 0, "a push without the credentials was accepted"
            assert not (tmp_path / "pushed.log").exists()
            pushed = git(work, "push", "-q", f"http://pipeline:s3cret@127.0.0.1:{port}/app.git", "main")
            assert pushed.returncode == 0, pushed.stderr
            head = git(work, "rev-parse", "HEAD").stdout.strip()
            assert (tmp_path / "pushed.log").read_text().split() == ["refs/heads/main", head]
        finally:
            terminate([psutil.Process(server.pid)] if server.poll() is None else [], grace=10)
            server.wait(timeout=10)


def test_credentials_readable_by_others_are_refused(tmp_path: Path) -> None:
    binary = toolchain_for(load_settings()).require("opslab-gitops")
    credentials = tmp_path / "credentials"
    credentials.write_text("pipeline:s3cret\n")
    credentials.chmod(0o644)

    def refused(*args: str) -> str:
        done = subprocess.run([str(binary), "git-server", "--dir", str(tmp_path / "r"), *args], capture_output=True,
                              text=True, timeout=30, check=False)  # fmt: skip
        assert done.returncode != 0, "the server started"
        return done.stderr

    assert "chmod 600" in refused("--addr", "127.0.0.1:0", "--credentials", str(credentials))
    assert "127.0.0.1 only" in refused("--addr", "0.0.0.0:0")
