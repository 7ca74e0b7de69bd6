"""`opslab incident start | status | submit | stop`: one incident at a time on the running platform.

start   checks the shop is healthy, records its intended state, starts steady load, issues the
        responder's kubeconfig (ServiceAccount shop/incident-responder, a token, mode 0600), and puts
        the incident's faults in. The state of the incident (what went in: the answer) is kept in
        .opslab/incident/active.json (0600), which the responder's kubeconfig cannot reach; a learner
        who owns the machine can read it, and is asked not to.
status  elapsed time, firing alerts, and the error budget spent since the start.
submit  records a diagnosis (service and fault type from the vocabulary); one per finding.
stop    waits briefly for the SLIs to settle, scores the response (opslab.incidents.scorer), writes
        the run directory (timeline, actions, score, report.html, the answer), then takes the faults
        out, restores the intended state, revokes the responder's token and stops the load.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import secrets
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from kubernetes import client
from kubernetes.client.rest import ApiException

from opslab.incidents import inject as inject_module
from opslab.incidents import intent as intent_module
from opslab.incidents import timeline, vocabulary
from opslab.incidents.catalog import Incident, catalog, choose
from opslab.incidents.report import write_report
from opslab.incidents.scoreboard import record_run
from opslab.incidents.scorer import Evidence, Score, Submission, recovered_since, score
from opslab.primitives.errors import OpslabError
from opslab.primitives.files import new_run_dir, write_private
from opslab.primitives.processes import kill_group
from opslab.runtime import kube
from opslab.runtime import kubeconfig as kubeconfig_module
from opslab.runtime.components.kube import AUDIT_LOG
from opslab.scenarios.load import LoadRun
from opslab.scenarios.model import Load
from opslab.scenarios.runner import ensure_platform
from opslab.settings import Settings
from opslab.shop.topology import NAMESPACE

RESPONDER = "incident-responder"
TIME_LIMIT = 30 * 60.0
SETTLE_WAIT = 90.0
"""How long `stop` waits for a fix to show: the SLIs' 25 s rates to clear, then hold for 30 s."""
AVAILABILITY_OBJECTIVE = 0.995
"""The shop's availability SLO (platform/prometheus/rules/shop-slo.yml): a 0.5 % monthly error budget."""
BUDGET_WINDOW = 30 * 24 * 3600.0


class IncidentError(OpslabError):
    """An incident command that cannot go ahead (none running, one already running, bad input)."""


class ShopBusy(IncidentError):
    """Another incident is running, or being started, on this platform: try again when it is done."""


@dataclass
class Active:
    """The running incident (the file .opslab/incident/active.json)."""

    run_id: str
    incident: str
    catalog: str
    seed: int
    started_at: float
    time_limit: float
    run_dir: str
    kubeconfig: str
    intent: dict[str, Any]
    cordoned_before: list[str]
    injected: dict[str, Any] = field(default_factory=dict)
    injected_at: float = 0.0
    submissions: list[dict[str, Any]] = field(default_factory=list)
    load_pid: int = 0
    load_started: float = 0.0
    responder: str = "person"
    """Who responds (a person, the oracle, an agent and its model, nobody): the scoreboard's column."""


def folder(settings: Settings) -> Path:
    return settings.paths.state / "incident"


def _active_file(settings: Settings) -> Path:
    return folder(settings) / "active.json"


@contextlib.contextmanager
def _starting(settings: Settings) -> Iterator[None]:
    """The engine's start lock, held from the "is an incident running?" check to the saved record:
    two starts racing (two terminals, two graders) would both find none running, and the second
    would overwrite the first's record and orphan its load and faults. The lock goes with its process."""
    folder(settings).mkdir(parents=True, exist_ok=True)
    with (folder(settings) / "start.lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ShopBusy(
                "another incident is being started on this platform",
                fix="wait for it, then see `opslab incident status`",
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def save(settings: Settings, active: Active) -> None:
    folder(settings).mkdir(parents=True, exist_ok=True)
    folder(settings).chmod(0o700)
    write_private(_active_file(settings), json.dumps(asdict(active), indent=1))


def load_active(settings: Settings) -> Active | None:
    try:
        return Active(**json.loads(_active_file(settings).read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as exc:
        raise IncidentError(
            f"{_active_file(settings)} is unreadable ({exc})", fix="run `opslab incident stop --force`"
        ) from None


def require_active(settings: Settings) -> Active:
    active = load_active(settings)
    if active is None:
        raise IncidentError("no incident is running", fix="start one with `opslab incident start [NAME | --random]`")
    return active


def _admin(settings: Settings) -> client.ApiClient:
    return kube.api_client(settings.paths.kubeconfig)


def responder_kubeconfig(settings: Settings) -> Path:
    return folder(settings) / "responder.kubeconfig"


def _issue_responder(api: client.ApiClient, settings: Settings, seconds: int) -> Path:
    """(Re)create the responder's ServiceAccount and write a kubeconfig with a fresh token (0600)."""
    core = client.CoreV1Api(api)
    with contextlib.suppress(ApiException):
        core.delete_namespaced_service_account(RESPONDER, NAMESPACE)
    for _ in range(50):  # the old account's deletion completes asynchronously
        try:
            core.create_namespaced_service_account(
                NAMESPACE, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=RESPONDER))
            )
            break
        except ApiException as exc:
            if exc.status != 409:
                raise
            time.sleep(0.2)
    return kubeconfig_module.write_service_account(
        responder_kubeconfig(settings),
        settings.paths.kubeconfig,
        core,
        account=RESPONDER,
        namespace=NAMESPACE,
        seconds=seconds,
        context="incident-responder",
    )


def _revoke_responder(api: client.ApiClient) -> None:
    with contextlib.suppress(ApiException):
        client.CoreV1Api(api).delete_namespaced_service_account(RESPONDER, NAMESPACE)


def _find(settings: Settings, name: str, extra: Path | None) -> Incident:
    for incident in catalog(settings.paths.root, extra):
        if incident.name == name:
            return incident
    raise IncidentError(f"incident {name} is no longer in the catalog", fix="run `opslab incident stop --force`")


def _until_clear(problems: Callable[[], list[str]], within: float) -> list[str]:
    """Ask ``problems`` every 2 s for up to ``within`` seconds until it finds none; what it found last."""
    deadline = time.monotonic() + within
    while True:
        found = problems()
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(2)


def wait_until_healthy(apps: client.AppsV1Api, core: client.CoreV1Api, within: float) -> list[str]:
    """Wait up to ``within`` seconds for every shop Deployment to be rolled out, ready and placed on
    Ready nodes; what is still wrong (empty when healthy)."""
    return _until_clear(lambda: intent_module.problems(apps, core, intent_module.snapshot(apps)), within)


def slis_outside(settings: Settings) -> list[str]:
    """Shop services whose SLIs are outside their objectives now (the newest sample of each)."""
    now = time.time()
    try:
        samples = timeline.sli_samples(f"http://127.0.0.1:{settings.ports.prometheus}", now - 2 * timeline.STEP, now)
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        return [f"Prometheus did not answer the SLI query ({type(exc).__name__})"]
    newest = {sample.service: sample for sample in samples}  # sorted by time: the last one wins
    return [
        f"{service}: {sample.error_ratio:.1%} errors, {sample.slow_ratio:.1%} slow"
        for service, sample in sorted(newest.items())
        if not sample.within
    ]


def wait_until_slis_within(settings: Settings, within: float) -> list[str]:
    """Wait up to ``within`` seconds for every shop SLI to be inside its objective (a fault undone a
    moment ago stays in the 25 s rates for a while); what is still outside."""
    return _until_clear(lambda: slis_outside(settings), within)


def start(
    settings: Settings,
    name: str | None,
    *,
    seed: int | None = None,
    extra: Path | None = None,
    time_limit: float = TIME_LIMIT,
    load: bool = True,
    healthy_within: float = 0.0,
    responder: str = "person",
) -> Active:
    """Start an incident (``name`` or one drawn with ``seed``); returns the running incident."""
    with _starting(settings):  # until the record is saved, a second start must not pass the check
        if load_active(settings) is not None:
            raise ShopBusy("an incident is already running", fix="finish it with `opslab incident stop`")
        ensure_platform(settings)
        seed = secrets.randbelow(1_000_000) if seed is None else seed
        incident = choose(catalog(settings.paths.root, extra), name, seed)
        api = _admin(settings)
        apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
        deadline = time.monotonic() + healthy_within
        problems = wait_until_healthy(apps, core, healthy_within)
        if not problems:
            # Each incident starts from a healthy shop: not from the tail of the one before it.
            problems = wait_until_slis_within(settings, max(0.0, deadline - time.monotonic()))
        if problems:
            raise IncidentError(
                "the shop is not healthy yet: " + "; ".join(problems[:3]),
                fix="wait for it (make status; `start --wait 120` waits), or restart the platform (make down up)",
            )
        run_dir = new_run_dir(settings.paths.runs, "incident")
        active = Active(
            run_id=run_dir.name,
            incident=incident.name,
            catalog=str(incident.path.parent),
            seed=seed,
            started_at=time.time(),
            time_limit=time_limit,
            run_dir=str(run_dir),
            kubeconfig=str(responder_kubeconfig(settings)),
            intent=intent_module.snapshot(apps),
            cordoned_before=sorted(inject_module.cordoned(api)),
            responder=responder,
        )
        save(settings, active)  # from here on, `stop` can undo whatever follows
    try:
        _issue_responder(api, settings, int(time_limit) + 600)
        if load:
            pid = LoadRun(
                settings.paths.root / "scenarios" / "load" / "locustfile.py",
                Load(shape="steady", rps=incident.rps, duration=time_limit),
                f"http://127.0.0.1:{settings.ports.shop}",
                run_dir,
            ).start_detached()
            active.load_pid, active.load_started = pid, psutil.Process(pid).create_time()
            save(settings, active)
        done = inject_module.Injected()
        active.injected_at = time.time()
        try:
            inject_module.inject(api, incident, active.run_id, seed, done)
        finally:
            active.injected = asdict(done)
            save(settings, active)
    except BaseException:
        with contextlib.suppress(Exception):
            stop(settings, force=True)
        raise
    return active


def submit(settings: Settings, service: str, fault_type: str, notes: str = "") -> Submission:
    active = require_active(settings)
    try:
        vocabulary.check(service, fault_type)
    except vocabulary.InvalidDiagnosis as exc:
        raise IncidentError(str(exc)) from None
    entry = Submission(time.time(), service, fault_type, notes)
    active.submissions.append(asdict(entry))
    save(settings, active)
    return entry


@dataclass(frozen=True)
class Status:
    run_id: str
    elapsed: float
    time_limit: float
    alerts: list[str]
    budget_spent: dict[str, float]
    """Per service, the share of a 30-day error budget spent since the incident started (percent)."""
    submissions: int
    kubeconfig: str


def status(settings: Settings) -> Status:
    active = require_active(settings)
    p = settings.ports
    elapsed = time.time() - active.started_at
    alerts = []
    try:
        response = httpx.get(f"http://127.0.0.1:{p.alertmanager}/api/v2/alerts", params={"active": "true"}, timeout=5)
        response.raise_for_status()
        for alert in response.json():
            labels = alert["labels"]
            if labels.get("alertname") != "Watchdog":
                where = labels.get("service") or labels.get("node") or labels.get("instance", "")
                alerts.append(f"{labels.get('alertname')} {where}".strip())
    except httpx.HTTPError as exc:
        alerts.append(f"(Alertmanager did not answer: {exc})")
    window = max(int(elapsed), 30)
    budget: dict[str, float] = {}
    query = f"avg_over_time(shop:sli_error_ratio:rate25s[{window}s])"
    try:
        response = httpx.get(f"http://127.0.0.1:{p.prometheus}/api/v1/query", params={"query": query}, timeout=5)
        response.raise_for_status()
        for row in response.json()["data"]["result"]:
            ratio = float(row["value"][1])
            if not math.isnan(ratio):
                spent = ratio * window / ((1 - AVAILABILITY_OBJECTIVE) * BUDGET_WINDOW) * 100
                budget[row["metric"].get("service", "")] = spent
    except httpx.HTTPError:
        pass
    return Status(
        active.run_id,
        elapsed,
        active.time_limit,
        sorted(set(alerts)),
        dict(sorted(budget.items())),
        len(active.submissions),
        active.kubeconfig,
    )


@dataclass
class Outcome:
    incident: Incident
    score: Score
    run_dir: Path
    injected: list[str]
    restored: list[str]


def _evidence(settings: Settings, active: Active, incident: Incident, ended: float) -> tuple[Evidence, list[Any]]:
    api = _admin(settings)
    prometheus = f"http://127.0.0.1:{settings.ports.prometheus}"
    done = inject_module.Injected(**active.injected) if active.injected else inject_module.Injected()
    intent_problems = intent_module.problems(client.AppsV1Api(api), client.CoreV1Api(api), active.intent)
    spans = timeline.alert_spans(prometheus, active.started_at - 60, ended)
    injected_at = active.injected_at or active.started_at
    evidence = Evidence(
        answer=incident.answer,
        injected_at=injected_at,
        ended_at=ended,
        first_alert_at=timeline.first_alert(spans, injected_at),
        submissions=[Submission(**s) for s in active.submissions],
        actions=timeline.responder_actions(settings.paths.state / AUDIT_LOG, active.started_at, ended),
        intent_problems=intent_problems,
        tampered=inject_module.tampered(api, done),
        samples=timeline.sli_samples(prometheus, injected_at, ended),
    )
    return evidence, spans


def settle(settings: Settings, active: Active, incident: Incident, wait: float, tick: Callable[[str], None]) -> None:
    """When the workloads are back at their intent (or rolling out to it) but the SLIs have not held
    long enough yet, wait (up to ``wait`` seconds) until they have, so a responder who stops right
    after a fix is not scored on the fix's first seconds."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        evidence, _ = _evidence(settings, active, incident, time.time())
        rolling = all(p.endswith(intent_module.ROLLING) for p in evidence.intent_problems)
        if evidence.tampered or (evidence.intent_problems and not rolling):
            return  # waiting cannot help
        if not evidence.intent_problems and recovered_since(evidence) is not None:
            return
        tick("waiting for the rollout to complete and the SLIs to hold inside their objectives")
        time.sleep(5)


def _stop_load(active: Active) -> None:
    if not active.load_pid:
        return
    with contextlib.suppress(psutil.NoSuchProcess):
        proc = psutil.Process(active.load_pid)
        if abs(proc.create_time() - active.load_started) > 1:
            return  # the pid was reused: not our locust
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except psutil.TimeoutExpired:
            kill_group(active.load_pid)


def stop(
    settings: Settings,
    *,
    force: bool = False,
    settle_wait: float = SETTLE_WAIT,
    tick: Callable[[str], None] = lambda _: None,
) -> Outcome | None:
    """End the running incident: score it (unless ``force``), then undo everything it did."""
    active = load_active(settings) if not force else _load_lenient(settings)
    if active is None:
        if force:
            return None
        raise IncidentError("no incident is running", fix="start one with `opslab incident start`")
    api = _admin(settings)
    outcome = None
    try:
        if not force:
            incident = _find(settings, active.incident, Path(active.catalog) if active.catalog else None)
            if settle_wait > 0:
                settle(settings, active, incident, settle_wait, tick)
            ended = time.time()
            evidence, spans = _evidence(settings, active, incident, ended)
            result = score(evidence)
            run_dir = Path(active.run_dir)
            injected = list((active.injected or {}).get("log", []))
            write_report(run_dir, incident, evidence, result, spans=spans, injected=injected)
            record_run(run_dir, incident.name, active.responder, active.started_at, active.seed)
            outcome = Outcome(incident, result, run_dir, injected, [])
    finally:
        done = inject_module.Injected(**active.injected) if active.injected else inject_module.Injected()
        restored = inject_module.take_out(api, done, set(active.cordoned_before))
        restored += intent_module.restore(client.AppsV1Api(api), active.intent)
        _revoke_responder(api)
        _stop_load(active)
        with contextlib.suppress(FileNotFoundError):
            responder_kubeconfig(settings).unlink()
        _active_file(settings).unlink(missing_ok=True)
        if outcome is not None:
            outcome.restored = restored
    return outcome


def _load_lenient(settings: Settings) -> Active | None:
    try:
        return load_active(settings)
    except IncidentError:
        _active_file(settings).unlink(missing_ok=True)
        return None
