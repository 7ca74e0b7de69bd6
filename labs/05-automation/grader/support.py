"""Helpers shared by lab 5's checks: the run's services, the learner's programs, and Alertmanager's side.

Isolation: every check works on Deployments of its own in the run's namespace, served by a small
simulated service of the grader (``Services``): its endpoint answers while the Deployment has
ready pods, it exports ready and unready replicas to Prometheus (job "labs", label
``opslab_run``), and it can break its endpoint while the pods stay Ready. The learner's programs
keep every Redis key under ``grading-<run>-<check>`` (OPSLAB_AUTOMATION_NAMESPACE), which the
run's sweep deletes; Prometheus rules and the Alertmanager route of a run are removed with it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import secrets
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import redis
from kubernetes import client
from kubernetes.client.rest import ApiException
from prometheus_client.parser import text_string_to_metric_families

from opslab.grading import isolation
from opslab.grading.fixtures import LearnerError, learner_file, python, start_learner, stop_learner
from opslab.grading.sandbox import Sandbox
from opslab.primitives.ports import free_port
from opslab.primitives.processes import kill_group
from opslab.primitives.readiness import wait_for
from opslab.shop.faults import FAULT_LABEL, carrier

REPLICAS_ANNOTATION = "opslab.dev/replicas"
HOLD_LABEL = "opslab.dev/hold"
FAILING_READINESS = carrier("failing-readiness")  # the build id whose pods the simulated kubelet fails
QUEUE = "remediation"
JOB_FIELDS = ("id", "state", "runbook", "target", "attempts", "log", "result")
"""What GET /jobs/{id} must answer at least (README, task 1)."""


# ---------------------------------------------------------------------- alerts as Alertmanager sends them


def alert(
    alertname: str, namespace: str, deployment: str, *, starts: str | None = None, status: str = "firing", **labels: str
) -> dict[str, Any]:
    """One alert of a version 4 webhook, as Alertmanager writes it."""
    merged = {"alertname": alertname, "namespace": namespace, "deployment": deployment, "service": deployment,
              "severity": "critical", **labels}  # fmt: skip
    fingerprint = uuid.uuid5(uuid.NAMESPACE_URL, json.dumps(sorted(merged.items()))).hex[:16]
    return {
        "status": status,
        "labels": merged,
        "annotations": {"summary": f"{alertname} on {namespace}/{deployment}"},
        "startsAt": starts or dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://127.0.0.1:9090/graph",
        "fingerprint": fingerprint,
    }


def delivery(*alerts: dict[str, Any], receiver: str = "grading") -> dict[str, Any]:
    """A version 4 webhook payload carrying ``alerts``."""
    alerts = tuple(json.loads(json.dumps(item)) for item in alerts)  # a copy the caller may break
    first = alerts[0]["labels"] if alerts else {}
    group = {"alertname": first.get("alertname", "")}
    return {
        "version": "4",
        "groupKey": f"{{}}:{{alertname={group['alertname']!r}}}",
        "truncatedAlerts": 0,
        "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
        "receiver": receiver,
        "groupLabels": group,
        "commonLabels": group,
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": list(alerts),
    }


# ---------------------------------------------------------------------- the run's Deployments and services


@dataclass
class Cell:
    """A check's Deployments in the run's namespace."""

    api: client.ApiClient
    namespace: str
    run_id: str
    names: list[str] = field(default_factory=list)

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api)

    def deploy(self, name: str, replicas: int = 2, *, held: bool = False) -> None:
        labels = {"app": name, **isolation.labels(self.run_id)}
        template_spec: dict[str, Any] = {"containers": [{"name": "app", "image": f"opslab/{name}:1.0"}]}
        if held:
            template_spec["nodeSelector"] = {HOLD_LABEL: self.run_id}
        body = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": labels, "annotations": {REPLICAS_ANNOTATION: str(replicas)}},
            "spec": {
                "replicas": replicas,
                "revisionHistoryLimit": 5,
                "selector": {"matchLabels": {"app": name}},
                "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": template_spec},
            },
        }
        self.apps.create_namespaced_deployment(self.namespace, body)
        self.names.append(name)

    def read(self, name: str) -> client.V1Deployment:
        return self.apps.read_namespaced_deployment(name, self.namespace)

    def rolled_out(self, name: str) -> bool:
        d = self.read(name)
        wanted = d.spec.replicas or 0
        s = d.status
        return bool(
            wanted > 0
            and (s.observed_generation or 0) >= (d.metadata.generation or 0)
            and (s.updated_replicas or 0) == wanted
            and (s.ready_replicas or 0) == wanted
            and (s.replicas or 0) == wanted
        )

    def wait_rolled_out(self, name: str, timeout: float = 60) -> None:
        if not wait_for(lambda: self.rolled_out(name), timeout, interval=0.5):
            raise RuntimeError(f"grader: deployment {self.namespace}/{name} did not roll out in {timeout:.0f} s")

    def scale(self, name: str, replicas: int) -> None:
        self.apps.patch_namespaced_deployment_scale(name, self.namespace, {"spec": {"replicas": replicas}})

    def release_hold(self, name: str) -> None:
        """Let the Deployment's pods schedule (its template loses the node selector that matches no node)."""
        self.apps.patch_namespaced_deployment(
            name, self.namespace, [{"op": "remove", "path": "/spec/template/spec/nodeSelector"}]
        )

    def break_rollout(self, name: str) -> None:
        """A bad release: a new image whose pods fail their readiness probe a few seconds after starting."""
        patch = {"spec": {"template": {"metadata": {"labels": {FAULT_LABEL: FAILING_READINESS}},
                                       "spec": {"containers": [{"name": "app", "image": f"opslab/{name}:2.0-bad"}]}}}}  # fmt: skip
        self.apps.patch_namespaced_deployment(name, self.namespace, patch)

    def template_is_good(self, name: str) -> bool:
        d = self.read(name)
        labels = d.spec.template.metadata.labels or {}
        return FAULT_LABEL not in labels and not d.spec.template.spec.containers[0].image.endswith("-bad")

    def pods(self, name: str) -> list[client.V1Pod]:
        listing = client.CoreV1Api(self.api).list_namespaced_pod(self.namespace, label_selector=f"app={name}")
        return [p for p in listing.items if p.metadata.deletion_timestamp is None]


def _ready(pod: client.V1Pod) -> bool:
    conditions = (pod.status.conditions if pod.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


class Services:
    """The grader's simulated services, one per Deployment of a cell, on one loopback port.

    GET /svc/<deployment>/  200 while the Deployment has a ready pod and its endpoint is not broken,
                            else 503
    GET /metrics            lab_service_{ready,unready,desired}_replicas{namespace,deployment,service}
    """

    def __init__(self, cell: Cell) -> None:
        self.cell = cell
        self.port = free_port()
        self.broken: dict[str, set[str]] = {}
        self.fail_next: dict[str, int] = {}
        self.counts: dict[str, dict[str, int]] = {}
        self.snapshot: dict[str, tuple[int, int, int, set[str]]] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self.server.daemon_threads = True
        self.threads = [
            threading.Thread(target=self.server.serve_forever, daemon=True),
            threading.Thread(target=self._watch, daemon=True),
        ]
        self._refresh()
        for thread in self.threads:
            thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/svc/{name}/"

    def _refresh(self) -> None:
        snapshot = {}
        for name in list(self.cell.names):
            try:
                pods = self.cell.pods(name)
                desired = self.cell.read(name).spec.replicas or 0
            except ApiException:
                continue
            ready = {p.metadata.name for p in pods if _ready(p)}
            snapshot[name] = (len(ready), len(pods) - len(ready), desired, ready)
        with self.lock:
            self.snapshot = snapshot

    def _watch(self) -> None:
        while not self.stopping.wait(0.5):
            with contextlib.suppress(Exception):
                self._refresh()

    def answer(self, name: str) -> int:
        with self.lock:
            ready, _, _, pods = self.snapshot.get(name, (0, 0, 0, set()))
            if self.fail_next.get(name, 0) > 0:
                self.fail_next[name] -= 1
                code = 500
            elif not ready:
                code = 503
            elif pods & self.broken.get(name, set()):
                code = 500
            else:
                code = 200
            self.counts.setdefault(name, {}).setdefault(str(code), 0)
            self.counts[name][str(code)] += 1
        return code

    def break_endpoint(self, name: str) -> set[str]:
        """Break the endpoint of the Deployment's current pods (they stay Ready): only new pods answer."""
        self._refresh()
        with self.lock:
            pods = set(self.snapshot.get(name, (0, 0, 0, set()))[3])
            self.broken[name] = pods
        return pods

    def fail_once(self, name: str, times: int = 1) -> None:
        with self.lock:
            self.fail_next[name] = times

    def pending_failures(self, name: str) -> int:
        with self.lock:
            return self.fail_next.get(name, 0)

    def metrics(self) -> str:
        lines = []
        with self.lock:
            snapshot = dict(self.snapshot)
        for metric, index in (("ready", 0), ("unready", 1), ("desired", 2)):
            lines.append(f"# TYPE lab_service_{metric}_replicas gauge")
            for name, values in snapshot.items():
                labels = f'namespace="{self.cell.namespace}",deployment="{name}",service="{name}"'
                lines.append(f"lab_service_{metric}_replicas{{{labels}}} {values[index]}")
        return "\n".join(lines) + "\n"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        services = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    body, code = services.metrics().encode(), 200
                elif self.path.startswith("/svc/"):
                    code = services.answer(self.path.split("/")[2])
                    body = b"ok\n" if code == 200 else b"unavailable\n"
                else:
                    body, code = b"not found\n", 404
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return

        return Handler

    def close(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


class Load:
    """Requests to the services' endpoints, about ``rps`` per service per second, each second's result
    kept; bounded in time (``limit``) and stopped with ``close``."""

    def __init__(self, services: Services, names: list[str], rps: float = 10, limit: float = 400) -> None:
        self.services, self.names, self.rps, self.limit = services, names, rps, limit
        self.results: list[tuple[float, str, bool]] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        ends = time.monotonic() + self.limit
        with httpx.Client(timeout=2) as http:
            while not self.stopping.is_set() and time.monotonic() < ends:
                for name in self.names:
                    try:
                        ok = http.get(self.services.url(name)).status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    self.results.append((time.monotonic(), name, ok))
                self.stopping.wait(1 / self.rps)

    def success_ratio(self, name: str, seconds: float) -> tuple[float, int]:
        since = time.monotonic() - seconds
        recent = [ok for at, n, ok in list(self.results) if n == name and at >= since]
        return (sum(recent) / len(recent) if recent else 0.0), len(recent)

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)


# ---------------------------------------------------------------------- the learner's programs


@dataclass
class Program:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 3) -> str:
        text = self.log.read_text(errors="replace").strip().splitlines() if self.log.is_file() else []
        useful = [line.strip() for line in text if line.strip()]
        return " | ".join(useful[-lines:])[:400] or "(no output)"

    def kill(self) -> None:
        """kill -9 the program and everything it started (as a crashed machine would)."""
        kill_group(self.proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


@dataclass
class Automation:
    """The learner's API, workers and agent for one check, with the run's environment."""

    lab_path: Path
    sandbox: Sandbox
    logs: Path
    redis_url: str
    prefix: str
    token: str
    token_file: Path
    kubeconfig: Path
    prometheus: str
    artifacts: Path
    scratch: Path
    port: int = field(default_factory=free_port)
    started: list[Program] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def environment(self, **extra: str) -> dict[str, str]:
        env = {
            "OPSLAB_REDIS_URL": self.redis_url,
            "OPSLAB_AUTOMATION_NAMESPACE": self.prefix,
            "OPSLAB_AUTOMATION_TOKEN_FILE": str(self.token_file),
            "OPSLAB_AUTOMATION_ARTIFACTS": str(self.artifacts),
            "OPSLAB_PROMETHEUS_URL": self.prometheus,
            "KUBECONFIG": str(self.kubeconfig),
        }
        env.update(extra)
        return env

    def _start(self, name: str, args: list[str], **env: str) -> Program:
        log = self.logs / f"{name}-{len(self.started)}.log"
        proc = start_learner(
            args, cwd=self.lab_path, log=log, sandbox=self.sandbox, what=name, env=self.environment(**env)
        )
        program = Program(name, proc, log)
        self.started.append(program)
        return program

    def start_api(self, *, port: int | None = None, **env: str) -> Program:
        learner_file(self.lab_path, "api.py")
        port = port or self.port
        args = [python(), "-m", "uvicorn", "api:app", "--host", "127.0.0.1", "--port", str(port),
                "--no-access-log", "--log-level", "warning"]  # fmt: skip
        program = self._start("api.py", args, **env)
        answering(program, f"http://127.0.0.1:{port}/healthz", "answer 200 on /healthz")
        return program

    def start_workers(self) -> Program:
        learner_file(self.lab_path, "workers.py")
        args = [python(), "-m", "dramatiq", "workers", "--processes", "1", "--threads", "4"]
        program = self._start("workers.py", args)

        def ready() -> bool:
            if not program.alive():
                raise LearnerError(f"the workers exited with status {program.proc.returncode}: {program.tail()}")
            return "ready for action" in program.log.read_text(errors="replace")

        if not wait_for(ready, 40, interval=0.3):
            raise LearnerError(f"the Dramatiq workers did not start within 40 s: {program.tail()}")
        return program

    def start_agent(self, targets: list[dict[str, str]], metrics_port: int, interval: float) -> Program:
        learner_file(self.lab_path, "agent.py")
        targets_file = self.scratch / "agent-targets.json"  # the sandbox sees the scratch directory
        targets_file.write_text(json.dumps(targets))
        env = {"OPSLAB_AGENT_TARGETS": str(targets_file), "OPSLAB_AGENT_PORT": str(metrics_port),
               "OPSLAB_AGENT_INTERVAL": str(interval)}  # fmt: skip
        program = self._start("agent.py", [python(), "agent.py"], **env)
        answering(program, f"http://127.0.0.1:{metrics_port}/metrics", f"serve /metrics on port {metrics_port}")
        return program

    def stop_all(self) -> None:
        for program in self.started:
            if program.alive():
                stop_learner(program.proc, grace=5)

    # -------------------------------------------------------------- talking to the API

    def post(self, payload: dict[str, Any], *, headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.post(
            f"{self.url}/alerts", json=payload, headers=self.headers if headers is None else headers, timeout=10
        )

    def deliver(self, *alerts: dict[str, Any]) -> list[str]:
        """Deliver ``alerts`` as Alertmanager would; the job ids the API answered, in order."""
        response = self.post(delivery(*alerts))
        if response.status_code not in {200, 201, 202}:
            raise LearnerError(
                f"POST /alerts answered {response.status_code} to a valid delivery: {response.text[:200]}"
            )
        return job_ids(response)

    def job(self, ident: str) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/jobs/{ident}", headers=self.headers, timeout=5)
        if response.status_code != 200:
            raise LearnerError(f"GET /jobs/{ident} answered {response.status_code}: {response.text[:200]}")
        body = response.json()
        missing = [name for name in JOB_FIELDS if name not in body]
        if missing:
            raise LearnerError(f"GET /jobs/{ident} has no {', '.join(missing)} (README, task 1)")
        return dict(body)

    def wait_state(self, ident: str, states: set[str], timeout: float) -> dict[str, Any]:
        """Wait until job ``ident`` is in one of ``states``; the job as last seen."""
        seen: dict[str, Any] = {}

        workers = [program for program in self.started if program.name == "workers.py"]

        def reached() -> bool:
            nonlocal seen
            if workers and not workers[-1].alive():
                raise LearnerError(f"the workers died: {workers[-1].tail()}")
            seen = self.job(ident)
            return seen.get("state") in states

        wait_for(reached, timeout, interval=0.5)
        return seen

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url, socket_timeout=5)

    def lock_key(self, namespace: str, name: str) -> str:
        return f"{self.prefix}:lock:{namespace}/{name}"


def answering(program: Program, url: str, what: str, timeout: float = 40) -> None:
    """Wait until ``url`` answers 200; fail the check if the program exits or does not within ``timeout``."""

    def up() -> bool:
        if not program.alive():
            raise LearnerError(f"{program.name} exited with status {program.proc.returncode}: {program.tail()}")
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    if not wait_for(up, timeout, interval=0.3):
        raise LearnerError(f"{program.name} does not {what} within {timeout:.0f} s: {program.tail()}")


def job_ids(response: httpx.Response) -> list[str]:
    """The job ids of a POST /alerts answer ({"jobs": [{"id": ...}, ...]})."""
    try:
        body = response.json()
        return [str(item["id"]) for item in body["jobs"]]
    except (ValueError, KeyError, TypeError):
        raise LearnerError(
            f'POST /alerts must answer {{"jobs": [{{"id": ...}}]}}, it answered {response.text[:200]}'
        ) from None


def summary(job: dict[str, Any]) -> str:
    log = job.get("log") or []
    last = log[-1] if isinstance(log, list) and log else ""
    return f"state {job.get('state')}, attempts {job.get('attempts')}, result {job.get('result')!r}, last log {last!r}"


def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The samples of a /metrics page by sample name ({} when it cannot be read or parsed)."""
    try:
        text = httpx.get(url, timeout=5).text
        families = list(text_string_to_metric_families(text))
    except (httpx.HTTPError, ValueError):
        return {}
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in families:
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


@contextlib.contextmanager
def slow_prometheus(delay: float) -> Iterator[tuple[str, list[float]]]:
    """An HTTP server that answers every request like an empty Prometheus query, ``delay`` seconds late.

    Yields its URL and the times requests arrived.
    """
    seen: list[float] = []

    class Slow(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(time.monotonic())
            time.sleep(delay)
            body = b'{"status":"success","data":{"resultType":"vector","result":[]}}'
            with contextlib.suppress(OSError):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        do_POST = do_GET

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Slow)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def new_token(scratch: Path, name: str) -> tuple[str, Path]:
    token = secrets.token_urlsafe(24)
    path = scratch / name
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token, path
