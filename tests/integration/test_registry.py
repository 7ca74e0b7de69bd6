"""The OCI registry (CNCF distribution) and crane, as lab 8's pipeline uses them: an image built
without a Docker engine is pushed, found by its tag and by its digest, and a digest keeps naming the
same image after the tag moves. No platform is needed."""

from __future__ import annotations

import functools
import io
import json
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from opslab.grading.fixtures import eventually
from opslab.primitives.ports import free_port
from opslab.primitives.processes import terminate
from opslab.settings import load as load_settings
from opslab.toolchain.resolve import toolchain_for

CONFIG = """version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
"""


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A registry on 127.0.0.1 with a file-system store; its host:port."""
    binary = toolchain_for(load_settings()).require("registry")
    work = tmp_path_factory.mktemp("registry")
    port = free_port()
    (work / "config.yml").write_text(CONFIG.format(root=work / "store", port=port))
    with (work / "registry.log").open("wb") as log:
        proc = subprocess.Popen([str(binary), "serve", str(work / "config.yml")], stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        try:

            def answers() -> bool:
                return httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=2).status_code == 200

            assert eventually(answers, 30), (work / "registry.log").read_text()[-2000:]
            yield f"127.0.0.1:{port}"
        finally:
            terminate([psutil.Process(proc.pid)] if proc.poll() is None else [], grace=10)
            proc.wait(timeout=10)


@functools.cache
def crane_binary() -> str:
    return str(toolchain_for(load_settings()).require("crane"))


def crane(*args: str) -> str:
    done = subprocess.run([crane_binary(), *args, "--insecure"], capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip
    assert done.returncode == 0, f"crane {args[0]}: {done.stderr.strip()}"
    return done.stdout.strip()


def layer(path: Path, name: str, content: str) -> Path:
    """A one-file layer tarball: what a pipeline's build step produces."""
    with tarfile.open(path, "w") as tar:
        data = content.encode()
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def test_an_image_built_without_docker_is_pushed_and_pinned_by_digest(registry: str, tmp_path: Path) -> None:
    repository = f"{registry}/shop/app"
    first = crane("append", "--new_layer", str(layer(tmp_path / "v1.tar", "app/VERSION", "1.0.0\n")),
                  "--new_tag", f"{repository}:1.0.0")  # fmt: skip
    assert first.startswith(f"{repository}@sha256:"), first
    digest = first.split("@", 1)[1]
    assert crane("digest", f"{repository}:1.0.0") == digest
    assert "1.0.0" in crane("ls", repository).split()

    manifest = json.loads(crane("manifest", f"{repository}@{digest}"))
    assert len(manifest["layers"]) == 1, manifest


def test_a_digest_names_the_same_content_after_the_tag_moves(registry: str, tmp_path: Path) -> None:
    repository = f"{registry}/shop/cart"
    pinned = crane("append", "--new_layer", str(layer(tmp_path / "a.tar", "VERSION", "a\n")),
                   "--new_tag", f"{repository}:latest").split("@", 1)[1]  # fmt: skip
    crane("append", "--new_layer", str(layer(tmp_path / "b.tar", "VERSION", "b\n")),
          "--new_tag", f"{repository}:latest")  # fmt: skip
    moved = crane("digest", f"{repository}:latest")
    assert moved != pinned
    for ref, expected in ((f"{repository}@{pinned}", "a\n"), (f"{repository}:latest", "b\n")):
        exported = subprocess.run([crane_binary(), "export", ref, "-", "--insecure"], capture_output=True, timeout=60,
                                  check=True).stdout  # fmt: skip
        with tarfile.open(fileobj=io.BytesIO(exported)) as tar:
            member = tar.extractfile("VERSION")
            assert member is not None and member.read().decode() == expected, ref
