"""opslab-gitops's Git server as lab 8's pipeline uses it: with --credentials a push needs them, and
--post-receive runs on every push to a repository the push created. No platform is needed."""

from __future__ import annotations

import http.client
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

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


@pytest.fixture
def server(tmp_path: Path) -> Iterator[int]:
    """A Git server without credentials on a free port; its port."""
    binary = toolchain_for(load_settings()).require("opslab-gitops")
    port = free_port()
    with (tmp_path / "server.log").open("wb") as log:
        command = [str(binary), "git-server", "--dir", str(tmp_path / "repositories"), "--addr", f"127.0.0.1:{port}"]
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:

            def listening() -> bool:
                with socket.socket() as sock:
                    return sock.connect_ex(("127.0.0.1", port)) == 0

            assert eventually(listening, 30), (tmp_path / "server.log").read_text()
            yield port
        finally:
            terminate([psutil.Process(proc.pid)] if proc.poll() is None else [], grace=10)
            proc.wait(timeout=10)


def _get(port: int, path: str, host: str = "127.0.0.1") -> int:
    """The status of a raw GET (the path is sent exactly as given, ``..`` included)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest("GET", path, skip_host=True)
        connection.putheader("Host", f"{host}:{port}")
        connection.endheaders()
        return connection.getresponse().status
    finally:
        connection.close()


def test_only_a_push_creates_a_repository_and_paths_stay_inside_the_root(tmp_path: Path, server: int) -> None:
    repositories = tmp_path / "repositories"
    work = tmp_path / "work"
    work.mkdir()
    cloned = git(work, "clone", "-q", f"http://127.0.0.1:{server}/missing.git", "missing")
    assert cloned.returncode != 0, "a clone of a repository nobody pushed succeeded"
    assert not (repositories / "missing.git").exists(), "a fetch created a repository"
    upload = "info/refs?service=git-upload-pack"
    for path in (f"/../outside.git/{upload}", f"/a/../../outside.git/{upload}", f"/%2e%2e/outside.git/{upload}",
                 f"/a/b/c.git/{upload}", f"/app.git/inner.git/{upload}", "/app.git/HEAD",
                 "/app.git/objects/info/packs"):  # fmt: skip
        assert _get(server, path) == 404, path
    assert not (tmp_path / "outside.git").exists()
    # A page on another site that resolves its own name to 127.0.0.1 cannot reach the server.
    assert _get(server, "/app.git/info/refs?service=git-receive-pack", host="attacker.example") == 403
    assert not (repositories / "app.git").exists()
    git(work, "init", "-q", "-b", "main")
    (work / "README.md").write_text("app\n")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "first")
    pushed = git(work, "push", "-q", f"http://127.0.0.1:{server}/app.git", "main")
    assert pushed.returncode == 0, pushed.stderr
    assert (repositories / "app.git" / "objects").is_dir()
    assert _get(server, f"/app.git/{upload}") == 200
    cloned = git(tmp_path, "clone", "-q", f"http://127.0.0.1:{server}/app.git", "copy")
    assert cloned.returncode == 0 and (tmp_path / "copy" / "README.md").is_file(), (
        f"a plain clone did not check out main (the repository's HEAD must name it): {cloned.stderr}"
    )
    # An owner and a repository (team/app.git): what tools that read an owner from a URL need.
    owned = git(work, "push", "-q", f"http://127.0.0.1:{server}/team/app.git", "main")
    assert owned.returncode == 0, owned.stderr
    assert (repositories / "team" / "app.git" / "objects").is_dir()
    assert not list(repositories.glob("app.git/**/inner.git")), "a repository was made inside another"
