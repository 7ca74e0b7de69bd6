"""Helpers shared by lab 2's checks and fixtures."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from opslab.grading.fixtures import LearnerError

GROUP, VERSION, PLURAL = "labs.opslab.dev", "v1alpha1", "selfhealingapps"
CRD_NAME = f"{PLURAL}.{GROUP}"


class Operator:
    """The learner's operator, running as a subprocess; its log is kept for failure messages."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc = proc
        self.log = log

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 4) -> str:
        text = self.log.read_text(errors="replace").strip().splitlines() if self.log.is_file() else []
        return " | ".join(line.strip()[:200] for line in text[-lines:]) or "(no output)"

    def assert_alive(self) -> None:
        if not self.alive():
            raise LearnerError(f"shop_operator.py exited with status {self.proc.returncode}: {self.tail()}")


def app(name: str, image: str = "opslab/web:1.0.0", replicas: int = 3, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SelfHealingApp",
        "metadata": {"name": name},
        "spec": {"image": image, "replicas": replicas, **extra},
    }


def conditions(obj: dict[str, Any]) -> dict[str, str]:
    return {c.get("type", ""): c.get("status", "") for c in (obj.get("status") or {}).get("conditions") or []}


def eventually(predicate: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    """The first truthy value of ``predicate`` within ``timeout`` seconds, else its last value."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception:  # the object may not exist yet
            value = None
        if value:
            return value
        time.sleep(interval)
    return value
