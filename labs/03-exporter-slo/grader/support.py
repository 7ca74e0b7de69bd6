"""Helpers shared by lab 3's checks and fixtures."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from opslab.grading.fixtures import LearnerError, learner_file, python
from opslab.primitives.processes import kill_group


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Exporter:
    """A running exporter.py."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def tail(self, lines: int = 3) -> str:
        text = self.log.read_text(errors="replace").strip().splitlines() if self.log.is_file() else []
        return " | ".join(line.strip()[:200] for line in text[-lines:]) or "(no output)"

    def stop(self) -> None:
        kill_group(self.proc.pid, 15)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            kill_group(self.proc.pid)
            self.proc.wait()


@dataclass
class Family:
    name: str
    type: str = ""
    help: str = ""
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)


def parse_exposition(text: str) -> dict[str, Family]:
    """The text exposition format, read literally (so a mislabelled metric is seen as it is)."""
    families: dict[str, Family] = {}

    def family(name: str) -> Family:
        return families.setdefault(name, Family(name))

    for line in text.splitlines():
        if line.startswith("# HELP "):
            _, _, name, *rest = line.split(" ", 3)
            family(name).help = rest[0] if rest else ""
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            family(name).type = kind.strip()
        elif line and not line.startswith("#"):
            head, value = line.rsplit(" ", 1)
            name, labels = head, {}
            if "{" in head:
                name, raw = head.split("{", 1)
                for pair in raw.rstrip("}").split('",'):
                    if "=" in pair:
                        key, val = pair.split("=", 1)
                        labels[key.strip()] = val.strip().strip('"')
            owner = next((f for f in families.values() if name == f.name or name.startswith(f.name + "_")), None)
            (owner or family(name)).samples.append((name, labels, float(value)))
    return families


def scrape(url: str) -> dict[str, Family]:
    response = httpx.get(url, timeout=15)
    response.raise_for_status()
    return parse_exposition(response.text)


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
    return list(answer.get("data", {}).get("result", []))


def bootstrap() -> str:
    value = os.environ.get("OPSLAB_KAFKA_BOOTSTRAP", "")
    if not value:
        pytest.fail("the platform is not running (no Kafka address): start it with `make up`")
    return value


def start_exporter(lab_path: Path, kafka: str, log: Path) -> Exporter:
    script = learner_file(lab_path, "exporter.py")
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [python(), str(script), "--bootstrap", kafka, "--port", str(port)],
            cwd=lab_path, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    exporter = Exporter(proc, port, log)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LearnerError(f"exporter.py exited with status {proc.returncode}: {exporter.tail()}")
        try:
            if httpx.get(exporter.url, timeout=5).status_code == 200:
                return exporter
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    exporter.stop()
    raise LearnerError(f"exporter.py did not answer on {exporter.url} within 20 s: {exporter.tail()}")
