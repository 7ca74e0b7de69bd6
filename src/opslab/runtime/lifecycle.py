"""`opslab up | down | status`: the embedded platform's lifecycle.

up     repairs what a crashed run left, checks ports, starts the supervisor and the components in
       dependency order, bootstraps RBAC, creates the simulated nodes, applies the Terraform root
       module and waits for real readiness (every node Ready, every Prometheus target up). A second
       `up` starts nothing twice. If `up` fails, it stops what it started.
down   stops everything and checks that no process and no listening port is left.
status reports each component's supervisor state and readiness probe.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shlex
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx
import psutil
from confluent_kafka import KafkaException
from kubernetes.client.rest import ApiException

from opslab.primitives.clock import SYSTEM_CLOCK, Clock
from opslab.primitives.errors import ComponentFailed, OpslabError, PortInUse
from opslab.primitives.files import write_atomic
from opslab.primitives.ports import listener
from opslab.primitives.processes import processes_mentioning, run, terminate
from opslab.primitives.readiness import ProbeResult, WaitTimeout, safe_probe, wait_until
from opslab.runtime import kube, nodes, topics
from opslab.runtime.component import Component, RuntimeContext
from opslab.runtime.components.delivery import flux_crds
from opslab.runtime.components.prometheus import LAB_JOB
from opslab.runtime.endpoints import endpoint_environment
from opslab.runtime.registry import Registry
from opslab.runtime.supervisor import Program, Supervisor
from opslab.runtime.terraform import Terraform
from opslab.settings import Settings
from opslab.toolchain.resolve import Toolchain

# Start order: each wave starts once the components it needs are ready.
INDEPENDENT = (
    "etcd", "kafka", "redis", "elasticmq", "alertmanager", "pushgateway", "opa", "git-server", "registry",
    "thanos-store", "thanos-query", "thanos-compact",
)  # fmt: skip
CONTROL_PLANE = ("kube-controller-manager", "kube-scheduler", "kwok", "prometheus", "thanos-sidecar", "gitops")
THANOS = ("thanos-sidecar", "thanos-store", "thanos-query", "thanos-compact")
APPLICATIONS = ("alert-bridge", "shop", "drift-detector")
STATE_SUBDIRS = ("data", "config", "pki", "supervisor")
log = logging.getLogger("opslab.runtime")
STOP_ORDER = (
    ("shop", "alert-bridge", "drift-detector", "gitops"),
    (
        "prometheus",
        *THANOS,
        "git-server",
        "registry",
        "alertmanager",
        "pushgateway",
        "kafka",
        "redis",
        "elasticmq",
        "opa",
        "kwok",
        "kube-controller-manager",
        "kube-scheduler",
    ),
    ("kube-apiserver",),
    ("etcd",),
)


class UpObserver(Protocol):
    """Receives `up`'s progress: one call per finished step."""

    def step(self, name: str, seconds: float, detail: str) -> None: ...


class _Silent:
    def step(self, name: str, seconds: float, detail: str) -> None:
        pass


@dataclass
class ComponentStatus:
    name: str
    state: str
    ready: bool
    detail: str
    pid: int
    endpoint: str
    uptime: int = 0


@dataclass
class UpReport:
    seconds: float
    started: list[str] = field(default_factory=list)
    already_running: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    components: list[ComponentStatus] = field(default_factory=list)


@dataclass
class DownReport:
    seconds: float
    stopped: list[str]
    swept: list[int]
    leftover_ports: list[int]
    purged: bool


class Platform:
    """The embedded platform of one checkout (its state lives in settings.paths.state)."""

    def __init__(self, settings: Settings, toolchain: Toolchain, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.settings = settings
        self.paths = settings.paths
        self.ctx = RuntimeContext(settings, toolchain)
        self.registry = Registry(self.ctx)
        self.supervisor = Supervisor(self.paths.state / "supervisor", self.paths.logs)
        self.clock = clock
        self.terraform = Terraform(self.ctx)

    # ------------------------------------------------------------------ helpers

    def markers(self) -> list[str]:
        """Paths that appear in the command line of every process this platform runs."""
        return [f"{self.paths.state / sub}/" for sub in STATE_SUBDIRS]

    @property
    def pid_record(self) -> Path:
        return self.paths.state / "supervisor" / "pids.json"

    def _runs_in_state_dir(self, proc: psutil.Process) -> bool:
        """The supervisor starts every program in the state directory; an editor or a `tail -f`
        that merely names a file there is not one of ours."""
        try:
            return Path(proc.cwd()).is_relative_to(self.paths.state)
        except (psutil.NoSuchProcess, psutil.AccessDenied, OSError):
            return False

    def record_pids(self) -> None:
        """Remember each component's pid and start time, to find them if supervisord is killed."""
        record = {}
        for name, state in self.supervisor.states().items():
            with contextlib.suppress(psutil.NoSuchProcess):
                if state.pid:
                    record[name] = [state.pid, psutil.Process(state.pid).create_time()]
        daemon = self.supervisor.daemon_pid()
        if daemon:
            record["supervisord"] = [daemon, psutil.Process(daemon).create_time()]
        write_atomic(self.pid_record, json.dumps(record), mode=0o600)

    def own_processes(self) -> list[psutil.Process]:
        """This checkout's platform processes: recorded pids, and any process naming its state dirs."""
        found: dict[int, psutil.Process] = {}
        for marker in self.markers():
            for proc in processes_mentioning(marker):
                if self._runs_in_state_dir(proc):
                    found[proc.pid] = proc
        try:
            recorded = json.loads(self.pid_record.read_text())
        except (OSError, ValueError):
            recorded = {}
        for pid, started in recorded.values():
            with contextlib.suppress(psutil.NoSuchProcess):
                proc = psutil.Process(pid)
                if abs(proc.create_time() - started) < 1 and proc.status() != psutil.STATUS_ZOMBIE:
                    found[pid] = proc
        return list(found.values())

    def programs(self) -> list[Program]:
        return [
            Program(
                name=c.name,
                command=c.command(),
                log=c.log,
                directory=self.paths.state,
                environment={**c.environment(), "OPSLAB_CONFIG_DIGEST": config_digest(c.config_files())},
                stop_seconds=c.stop_seconds,
            )
            for c in self.registry
        ]

    def kubeconfig(self) -> Path:
        return self.paths.kubeconfig

    # ------------------------------------------------------------------ up

    def repair(self) -> list[str]:
        """Clean up after a crashed run: orphaned processes and stale supervisor files."""
        if self.supervisor.alive():
            return []
        notes = []
        orphans = self.own_processes()
        if orphans:
            pids = terminate(orphans, grace=10)
            notes.append(f"stopped {len(pids)} processes left running by a crashed run")
        for stale in (self.supervisor.socket, self.supervisor.pidfile):
            if stale.exists():
                stale.unlink()
                notes.append(f"removed stale {stale.name}")
        return notes

    def check_ports(self, skip: Iterable[str] = ()) -> None:
        """Fail with PortInUse if a port of a component that is not running is held by anyone."""
        skipped = set(skip)
        own = {p.pid for p in self.own_processes()}
        for component in self.registry:
            if component.name in skipped:
                continue
            for purpose, port in component.ports.items():
                holder = listener(port)
                if holder is None or (holder.pid is not None and holder.pid in own):
                    continue
                var = "OPSLAB_PORT_" + _port_setting(self.settings, port).upper()
                raise PortInUse(
                    f"cannot start {component.name}: {holder.describe()} ({purpose} port)",
                    fix=f"stop that process, or move opslab's {component.name} with {var}=<free port>",
                )

    def up(self, observer: UpObserver | None = None) -> UpReport:
        observer = observer or _Silent()
        began = self.clock.monotonic()
        report = UpReport(seconds=0.0)
        for sub in (self.paths.state, self.paths.logs, self.paths.config, self.paths.data, self.paths.runs):
            sub.mkdir(parents=True, exist_ok=True)
        self.paths.state.chmod(0o700)

        t = self.clock.monotonic()
        report.repaired = self.repair()
        daemon_was_alive = self.supervisor.alive()
        running_before = (
            {name for name, s in self.supervisor.states().items() if s.running} if daemon_was_alive else set()
        )
        healthy_before = {n for n in running_before if safe_probe(self.registry.get(n).probe).ok}
        self.check_ports(skip=running_before)
        observer.step("preflight", self.clock.monotonic() - t, "; ".join(report.repaired) or "ports free")

        started: list[str] = []
        try:
            t = self.clock.monotonic()
            for component in self.registry:
                component.prepare()
            changed = self.supervisor.write_config(self.programs())
            if not daemon_was_alive:
                self.supervisor.start_daemon()
            elif changed:
                self.supervisor.update()
                healthy_before = {n for n in healthy_before if self.supervisor.state(n).running}
            observer.step("supervisor", self.clock.monotonic() - t, "configuration written")

            def launch(names: Iterable[str]) -> None:
                for name in names:
                    if name not in healthy_before:
                        self.supervisor.start(name)
                        started.append(name)

            t = self.clock.monotonic()
            launch(INDEPENDENT)
            self._wait(["etcd"], observer)
            launch(["kube-apiserver"])
            self._wait(["kube-apiserver"], observer)
            self._bootstrap()
            observer.step("bootstrap", self.clock.monotonic() - t, "RBAC and CRDs applied")

            launch(CONTROL_PLANE)
            self._wait(["kube-controller-manager", "kube-scheduler", "kwok"], observer)

            t = self.clock.monotonic()
            core = kube.core(self.paths.kubeconfig)
            created, deleted = nodes.reconcile(core, self.settings.cluster)
            self._wait_probe("nodes", lambda: nodes.readiness(core, self.settings.cluster), timeout=60)
            change = f" (created {len(created)}, deleted {len(deleted)})" if created or deleted else ""
            observer.step("nodes", self.clock.monotonic() - t, f"{self.settings.cluster.nodes} Ready{change}")

            t = self.clock.monotonic()
            detail = self.terraform.apply()
            observer.step("terraform", self.clock.monotonic() - t, detail)

            t = self.clock.monotonic()
            self._apply(self.paths.platform / "k8s" / "shop", kustomize=True)
            observer.step("shop manifests", self.clock.monotonic() - t, "Deployments in namespace shop applied")

            self._wait(["kafka", "redis", "elasticmq", "opa", "git-server", "registry", "gitops"], observer)
            t = self.clock.monotonic()
            created_topics = topics.ensure(
                f"127.0.0.1:{self.settings.ports.kafka}", self.paths.platform / "kafka" / "topics.yaml"
            )
            observer.step(
                "kafka topics",
                self.clock.monotonic() - t,
                f"created {', '.join(created_topics)}" if created_topics else "present",
            )

            launch(APPLICATIONS)
            self._wait(["prometheus", "alertmanager", *THANOS, *APPLICATIONS], observer)
            self._reload_running(healthy_before)
            t = self.clock.monotonic()
            self._wait_probe("prometheus targets", self.targets_probe, timeout=60)
            observer.step("scrape targets", self.clock.monotonic() - t, "every Prometheus target up")
        except BaseException as failure:
            self._roll_back(started, stop_daemon=not daemon_was_alive)
            if isinstance(failure, WaitTimeout):
                raise ComponentFailed(str(failure), fix=f"see the logs in {self.paths.logs}") from None
            if isinstance(failure, ApiException):
                raise ComponentFailed(
                    f"the API server refused a request during start-up: {failure.status} {failure.reason}",
                    fix=f"see {self.paths.logs / 'kube-apiserver.log'}",
                ) from None
            if isinstance(failure, KafkaException | httpx.HTTPError):
                raise ComponentFailed(
                    f"a platform service did not answer during start-up: {failure}".splitlines()[0],
                    fix=f"see the logs in {self.paths.logs}",
                ) from None
            raise

        self.write_env_file()
        self.record_pids()
        report.started = started
        report.already_running = sorted(healthy_before)
        report.components = self.status()
        report.seconds = self.clock.monotonic() - began
        return report

    def _roll_back(self, started: list[str], *, stop_daemon: bool) -> None:
        """Stop what a failed `up` started, so it leaves no half-started platform behind.

        Never raises: the error that made `up` fail is the one the user must see.
        """
        try:
            if stop_daemon:
                if self.supervisor.alive():
                    self._stop_all()
                leftovers = self.own_processes()
                if leftovers:
                    terminate(leftovers, grace=5)
                return
            for name in reversed(started):
                self.supervisor.stop(name)
        except Exception as exc:  # keep the original failure visible
            log.warning("Rolling back the failed start was incomplete: %s", exc)

    def _wait(self, names: list[str], observer: UpObserver) -> None:
        """Wait for several components concurrently; report each as it becomes ready."""
        errors: list[BaseException] = []
        lock = threading.Lock()
        began = self.clock.monotonic()

        def one(component: Component) -> None:
            try:
                result = wait_until(
                    component.probe,
                    what=component.name,
                    timeout=component.ready_timeout,
                    clock=self.clock,
                    abort=lambda: self._dead(component),
                )
                with lock:
                    observer.step(component.name, self.clock.monotonic() - began, result.detail)
            except BaseException as exc:
                with lock:
                    errors.append(exc)

        threads = [threading.Thread(target=one, args=(self.registry.get(n),), daemon=True) for n in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]

    def _reload_running(self, running: set[str]) -> None:
        """Make an already running Prometheus and Alertmanager re-read their rules and configuration."""
        for name in ("prometheus", "alertmanager"):
            if name in running:
                port = getattr(self.settings.ports, name)
                response = httpx.post(f"http://127.0.0.1:{port}/-/reload", timeout=30)
                if response.status_code != 200:
                    raise ComponentFailed(
                        f"{name} refused its new configuration: {response.text.strip()[:300]}",
                        fix=f"fix the file it names, then run `opslab up` again (see {self.paths.logs / name}.log)",
                    )

    def _dead(self, component: Component) -> str | None:
        state = self.supervisor.state(component.name)
        if state.state in ("FATAL", "BACKOFF", "EXITED", "STOPPED"):
            return f"it is {state.state} ({state.description}); last log lines: {_tail(component.log)}"
        return None

    def _wait_probe(self, what: str, probe: Callable[[], ProbeResult], timeout: float) -> None:
        wait_until(probe, what=what, timeout=timeout, clock=self.clock)

    def _apply(self, manifests: Path, *, kustomize: bool = False) -> None:
        """kubectl apply (server-side) a directory of manifests or a kustomization."""
        kubectl = self.ctx.toolchain.require("kubectl")
        out = run(
            [kubectl, "--kubeconfig", self.paths.kubeconfig, "apply", "--server-side", "--force-conflicts",
             "--field-manager=opslab", "-k" if kustomize else "-f", manifests],
            timeout=60,
        )  # fmt: skip
        if not out.ok:
            raise ComponentFailed(f"applying {manifests} failed: {out.tail()}")

    def _bootstrap(self) -> None:
        """RBAC of the platform's own components, and the CRDs (cluster-wide, before anything uses
        them): opslab's own and Flux's, which `opslab setup` ships next to the GitOps reconciler."""
        self._apply(self.paths.platform / "k8s" / "bootstrap")
        self._apply(self.paths.platform / "k8s" / "crds", kustomize=True)
        crds = flux_crds(self.registry.get("gitops"))
        self._apply(crds)
        kubectl = self.ctx.toolchain.require("kubectl")
        out = run(
            [kubectl, "--kubeconfig", self.paths.kubeconfig, "wait", "--for=condition=Established",
             "--timeout=60s", "-f", crds],
            timeout=70,
        )  # fmt: skip
        if not out.ok:
            raise ComponentFailed(f"Flux's CRDs in {crds} were not served: {out.tail()}")

    def targets_probe(self) -> ProbeResult:
        """Ready when Prometheus reports every platform target with health "up" (targets that labs
        and learners add, job LAB_JOB, are theirs: a learner's stopped exporter is not the platform's)."""
        url = f"http://127.0.0.1:{self.settings.ports.prometheus}/api/v1/targets?state=active"
        active = httpx.get(url, timeout=5).json()["data"]["activeTargets"]
        data = [t for t in active if t["labels"].get("job") != LAB_JOB]
        down = [t["labels"]["job"] for t in data if t["health"] != "up"]
        if not data:
            return ProbeResult.failed("no targets yet")
        if down:
            return ProbeResult.failed(f"{len(data) - len(down)}/{len(data)} targets up (waiting for {down[0]})")
        return ProbeResult.passed(f"{len(data)} targets up")

    def write_env_file(self) -> Path:
        """.opslab/env: source it to use kubectl, promtool, Kafka tools and the endpoints directly."""
        tc = self.ctx.toolchain
        tools = ("kubectl", "promtool", "kafka-topics", "redis-cli", "opa", "crane")
        bins = {str(tc.require(tool).parent) for tool in tools} | {str(Path(sys.executable).parent)}
        bins.add(str(self.terraform.binary().parent))  # terraform, or OpenTofu's `tofu`
        variables = {**endpoint_environment(self.settings), **self.terraform.user_env()}
        lines = [
            "# Generated by `opslab up`. Use it with:  source .opslab/env",
            *[f"export {k}={shlex.quote(v)}" for k, v in variables.items()],
            f'export PATH="{":".join(sorted(bins))}:$PATH"',
            "",
        ]
        return write_atomic(self.paths.env_file, "\n".join(lines), mode=0o600)

    # ------------------------------------------------------------------ status

    def status(self) -> list[ComponentStatus]:
        states = self.supervisor.states() if self.supervisor.alive() else {}
        result = []
        for component in self.registry:
            state = states.get(component.name)
            if state is None or not state.running:
                name = state.state if state else "STOPPED"
                result.append(ComponentStatus(component.name, name, False, "not running", 0, component.endpoint))
                continue
            probe = safe_probe(component.probe)
            result.append(
                ComponentStatus(
                    component.name,
                    state.state,
                    probe.ok,
                    probe.detail,
                    state.pid,
                    component.endpoint,
                    state.uptime,
                )
            )
        return result

    def running(self) -> bool:
        return self.supervisor.alive()

    # ------------------------------------------------------------------ down

    def _stop_all(self) -> None:
        """Stop the components in reverse dependency order (each wave in parallel), then supervisord.

        Stopping etcd or the API server before their clients makes the clients' shutdown hang on
        retries, so clients go first.
        """
        daemon = self.supervisor.daemon_pid()
        for wave in STOP_ORDER:
            threads = [threading.Thread(target=self._stop_quietly, args=(name,)) for name in wave]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        self.supervisor.stop_all()
        self.supervisor.shutdown()
        if daemon is not None:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.TimeoutExpired):
                psutil.Process(daemon).wait(60)

    def _stop_quietly(self, name: str) -> None:
        try:
            self.supervisor.stop(name)
        except Exception as exc:
            log.warning("Stopping %s failed: %s", name, exc)

    def down(self, *, purge: bool = False) -> DownReport:
        began = time.monotonic()
        stopped = []
        if self.supervisor.alive():
            stopped = [n for n, s in self.supervisor.states().items() if s.running]
            self._stop_all()
        swept = terminate(self.own_processes(), grace=10)
        for stale in (self.supervisor.socket, self.supervisor.pidfile, self.pid_record):
            stale.unlink(missing_ok=True)
        leftover = [port for c in self.registry for port in c.ports.values() if listener(port) is not None]
        own_left = [p for p in leftover if _held_by_us(p, self.markers())]
        if purge:
            for name in ("data", "pki", "config", "supervisor", "terraform", "logs"):
                target = self.paths.state / name
                if target.exists():
                    shutil.rmtree(target)
            for name in ("kubeconfig", "env"):
                (self.paths.state / name).unlink(missing_ok=True)
        if own_left:
            raise OpslabError(
                f"ports {own_left} are still held by opslab processes after down",
                fix="run `opslab down` again",
            )
        return DownReport(time.monotonic() - began, stopped, swept, leftover, purge)


def config_digest(files: list[Path]) -> str:
    """A short digest of a component's configuration files: part of its supervisor program, so a
    changed file makes the supervisor restart it on the next `up`."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.read_bytes() if path.is_file() else b"")
    return digest.hexdigest()[:16]


def _held_by_us(port: int, markers: list[str]) -> bool:
    holder = listener(port)
    return bool(holder and any(m in holder.cmdline for m in markers))


def _port_setting(settings: Settings, port: int) -> str:
    for name, value in settings.ports.items():
        if value == port:
            return name
    return "?"


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(line.strip()[:200] for line in text[-lines:]) or "(empty log)"
