"""`opslab setup` on a throwaway cache: a corrupt entry is rebuilt, a missing tool is named."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def setup(*args: str, cache: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opslab", "setup", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "OPSLAB_CACHE_DIR": str(cache), "OPSLAB_STATE_DIR": str(cache / "state"), **env},
        timeout=600,
        check=False,
    )


def test_a_corrupt_cache_entry_is_rebuilt(tmp_path: Path) -> None:
    first = setup("--only", "redis", cache=tmp_path)
    assert first.returncode == 0, first.stderr
    made = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))[:20]
    assert (tmp_path / "redis").is_dir(), f"setup built no redis entry in {tmp_path} ({made}): {first.stdout}"
    entry = next((tmp_path / "redis").iterdir())
    binary = entry / "root" / "usr" / "bin" / "redis-check-rdb"
    binary.write_bytes(binary.read_bytes()[:1000])  # a truncated download or a disk error

    second = setup("--only", "redis", cache=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "corrupt: root/usr/bin/redis-check-rdb has the wrong size: building" in second.stdout
    version = subprocess.run(
        [str(entry / "bin" / "redis-server"), "--version"], capture_output=True, text=True, check=True
    )
    assert "Redis server v=7.0" in version.stdout

    third = setup("--only", "redis", cache=tmp_path)
    assert "from cache" in third.stdout and "building" not in third.stdout


def test_a_missing_prerequisite_is_named_with_how_to_install_it(tmp_path: Path) -> None:
    result = setup("--only", "etcd", cache=tmp_path, PATH="/nonexistent")
    assert result.returncode == 1
    assert result.stderr.startswith("error: Go is not installed; install Go 1.")
    assert "Traceback" not in result.stderr
    assert not list((tmp_path / "etcd").glob("*")), "nothing half-built is left in the cache"


def test_elasticmq_is_fetched_by_maven_once(tmp_path: Path) -> None:
    first = setup("--only", "elasticmq", cache=tmp_path)
    assert first.returncode == 0, first.stderr
    entry = next(p for p in (tmp_path / "elasticmq").iterdir() if not p.name.endswith(".partial"))
    assert list((entry / "libs").glob("elasticmq-server_2.13-*.jar"))
    assert list((entry / "libs").glob("logback-classic-*.jar")), "the server's logging binding is fetched with it"
    assert "org.elasticmq.server.Main" in (entry / "bin" / "elasticmq-server").read_text()

    again = setup("--only", "elasticmq", cache=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "from cache" in again.stdout and "building" not in again.stdout
