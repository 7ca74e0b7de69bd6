"""Helpers shared by lab 2's checks and fixtures."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from opslab.grading.fixtures import LearnerError, run_learner, stop_learner

GROUP, VERSION, PLURAL = "labs.opslab.dev", "v1alpha1", "selfhealingapps"
CRD_NAME = f"{PLURAL}.{GROUP}"

GO_BUILD_TIMEOUT = float(os.environ.get("OPSLAB_LAB_SETUP_LIMIT") or 600)
"""A cold build (controller-runtime and client-go from the module proxy) takes minutes on a laptop:
lab.toml's setup_limit, part of the grading's time_limit, before the first check starts."""


LEARNER_RULES = (
    {"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["get", "list", "watch", "patch", "update"]},
    {"apiGroups": [GROUP], "resources": [f"{PLURAL}/status"], "verbs": ["get", "patch", "update"]},
    {"apiGroups": ["apps"], "resources": ["deployments"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    {"apiGroups": [""], "resources": ["services", "configmaps"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch", "update"]},
)  # fmt: skip
"""What the learner's operator may do, in the grading namespace only: what an operator of this
app needs (its apps, their status, the children, the registry ConfigMap, events), nothing else."""

LEARNER_CLUSTER_RULES = (
    {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["list", "watch"]},
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
)
"""Read-only, cluster-wide: kopf watches CRDs and namespaces to know what it may serve."""


class Operator:
    """The learner's operator, running as a subprocess; its log is kept for failure messages."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path, name: str = "shop_operator.py") -> None:
        self.proc = proc
        self.log = log
        self.name = name

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 4) -> str:
        text = self.log.read_text(errors="replace").strip().splitlines() if self.log.is_file() else []
        return " | ".join(line.strip()[:200] for line in text[-lines:]) or "(no output)"

    def assert_alive(self) -> None:
        if not self.alive():
            raise LearnerError(f"{self.name} exited with status {self.proc.returncode}: {self.tail()}")

    def stop(self) -> None:
        stop_learner(self.proc)


def go_track(lab_path: Path) -> bool:
    """Whether the graded directory holds the Go track (a controller-runtime operator) rather than kopf."""
    return (lab_path / "go.mod").is_file()


def build_go_operator(lab_path: Path, out: Path, timeout: float = GO_BUILD_TIMEOUT) -> Path:
    """`go build` the learner's Go operator into ``out``; a build error is a LearnerError naming the first error.

    The build changes nothing in the learner's directory (-mod=readonly) and uses the Go on PATH
    (GOTOOLCHAIN=local: no toolchain download behind the learner's back).
    """
    if shutil.which("go") is None:
        raise LearnerError(f"{lab_path} holds a Go operator (go.mod) but Go is not installed: install Go 1.26 or newer")
    binary = out / "operator"
    env = {"CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly -buildvcs=false"}
    args = ["go", "build", "-trimpath", "-o", str(binary), "."]
    run = run_learner(args, cwd=lab_path, timeout=timeout, env=env, what="`go build` of your operator")
    if run.returncode == 0 and binary.is_file():
        return binary
    output = run.stderr + run.stdout
    progress = ("#", "go: downloading", "go: extracting", "go: finding")  # not errors
    first = next((line.strip() for line in output.splitlines() if line.strip() and not line.startswith(progress)), "")
    if any(sign in output for sign in ("go.sum", "go mod tidy", "no required module", "cannot find module")):
        fix = f"run `go mod tidy` in {lab_path}, then grade again"
    else:
        fix = f"run `go build .` in {lab_path}, fix the first error and grade again"
    first = first.rstrip(":").removesuffix("; to add it")[:300] or "go build failed"
    raise LearnerError(f"your Go operator does not build: {first}; {fix}")


def app_body(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "SelfHealingApp", "metadata": {"name": name}, "spec": spec}


def conditions(obj: dict[str, Any]) -> dict[str, str]:
    return {c.get("type", ""): c.get("status", "") for c in (obj.get("status") or {}).get("conditions") or []}
