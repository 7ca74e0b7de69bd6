"""Lab 5's automation backend (the reference, or a learner's) run beside the platform: its API
(uvicorn) and its workers (Dramatiq on the platform's Redis), as `opslab demo` and the automation
bench run it.

Every Redis key the backend writes is under a prefix of its own (OPSLAB_AUTOMATION_NAMESPACE) and
is deleted when it stops; its bearer token is a 0600 file; its runbooks act with the kubeconfig
given (in the demo: the incident responder's least-privilege ServiceAccount).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import redis

from opslab.primitives.ports import free_port
from opslab.primitives.processes import kill_group
from opslab.primitives.readiness import wait_for

REFERENCE = Path("solutions") / "05-automation"
"""Lab 5's reference solution, relative to the repository."""


class Backend:
    """Lab 5's programs in ``code``, with their logs, token and artifacts in ``work``."""

    def __init__(self, env: Mapping[str, str], work: Path, code: Path, namespace: str = "") -> None:
        if not (code / "api.py").is_file() or not (code / "workers.py").is_file():
            raise FileNotFoundError(f"{code} has no api.py and workers.py")
        self.env, self.work, self.code = dict(env), work, code
        self.namespace = namespace or f"automation-{secrets.token_hex(3)}"
        self.token = secrets.token_hex(16)
        self.token_file = work / "automation-token"
        self.token_file.write_text(self.token)
        self.token_file.chmod(0o600)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def start(self, args: list[str], log: str, namespace: str = "") -> subprocess.Popen[bytes]:
        """One of the backend's programs, in a process group of its own."""
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # ansible-playbook, dramatiq
        env = {**os.environ, **self.env, "PATH": path, "OPSLAB_AUTOMATION_NAMESPACE": namespace or self.namespace,
               "OPSLAB_AUTOMATION_TOKEN_FILE": str(self.token_file), "PYTHONDONTWRITEBYTECODE": "1",
               "OPSLAB_AUTOMATION_ARTIFACTS": str(self.work / "artifacts")}  # fmt: skip
        with (self.work / log).open("wb") as out:
            proc = subprocess.Popen(args, cwd=self.code, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # fmt: skip
        self.procs.append(proc)
        return proc

    def api(self, port: int = 0, namespace: str = "") -> subprocess.Popen[bytes]:
        """The API on ``port`` (a free one by default), once it answers /readyz."""
        self.port = port or free_port()
        namespace = namespace or self.namespace
        proc = self.start([sys.executable, "-m", "uvicorn", "api:app", "--host", "127.0.0.1", "--port", str(self.port),
                           "--no-access-log", "--log-level", "warning"], f"api-{namespace}.log", namespace)  # fmt: skip

        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"lab 5's API exited ({proc.returncode}): see {self.work}/api-{namespace}.log")
            try:
                return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        if not wait_for(up, 30):
            raise RuntimeError(f"lab 5's API did not answer /readyz within 30 s: see {self.work}/api-{namespace}.log")
        return proc

    def workers(self, namespace: str = "", threads: int = 4) -> subprocess.Popen[bytes]:
        namespace = namespace or self.namespace
        return self.start([sys.executable, "-m", "dramatiq", "workers", "--processes", "1", "--threads", str(threads)],
                          f"workers-{namespace}.log", namespace)  # fmt: skip

    def jobs(self) -> list[dict[str, Any]]:
        """Every job the API knows (GET /jobs), [] while it does not answer."""
        try:
            answer = httpx.get(f"{self.url}/jobs", headers=self.headers, timeout=5)
            answer.raise_for_status()
        except httpx.HTTPError:
            return []
        body = answer.json()
        found = body.get("jobs", body) if isinstance(body, dict) else body
        return [job for job in found if isinstance(job, dict)] if isinstance(found, list) else []

    def stop(self, proc: subprocess.Popen[bytes] | None = None) -> None:
        """Stop one program (or all of them) and what it started."""
        for running in [proc] if proc is not None else list(self.procs):
            kill_group(running.pid)
            running.wait()
            self.procs.remove(running)

    def drop(self, namespace: str = "") -> None:
        """Delete every Redis key under the namespace."""
        store = redis.Redis.from_url(self.env["OPSLAB_REDIS_URL"])
        try:
            keys = list(store.scan_iter(match=f"{namespace or self.namespace}:*", count=1000))
            if keys:
                store.delete(*keys)
        finally:
            store.close()

    def close(self) -> None:
        self.stop()
        self.drop()
        self.token_file.unlink(missing_ok=True)
