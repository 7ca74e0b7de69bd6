"""Lab 5 checks: an automation backend that turns alerts into safe remediation jobs: a webhook API
that never blocks, workers that survive crashes and respect leases, an Ansible runbook, and a
health agent that heals without an alert."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from support import (
    QUEUE,
    Automation,
    Cell,
    Load,
    Services,
    alert,
    delivery,
    scrape,
    slow_prometheus,
    summary,
    wait_for,
)  # fmt: skip

from opslab import settings as opslab_settings
from opslab.grading.fixtures import LearnerError, python, run_learner
from opslab.grading.rubric import check
from opslab.primitives.bursts import burst, post_request
from opslab.primitives.ports import free_port
from opslab.runtime import run_config

BURST_DELIVERIES = 500
BURST_CLIENTS = 10
BURST_P99_S = 0.500
"""The grader's bound, on a machine that may be busy with other gradings: half the slow
Prometheus's delay, so an API that waits on it fails (the reference's p99 reached 268-608 ms per
burst in a make test with three gradings at once, so a quarter was too tight). The 50 ms target is measured on a quiet
machine by `make bench-automation` (docs/performance.md)."""
BURST_TRIES = 3
BURST_WARM_UP = 300
"""Deliveries before the measured bursts: a fresh API process answers its first few hundred slowly."""
"""Bursts at most: the best one counts (a machine busy with other work stalls a burst now and then)."""
SLOW_PROMETHEUS_S = 1.0
BURST_LIMIT_S = 20
"""A burst that takes longer is cut short: its unanswered deliveries fail the check."""


def later(minutes: float = 0) -> str:
    """An Alertmanager timestamp ``minutes`` from now."""
    moment = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def jobs_for(automation: Automation, target: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{automation.url}/jobs", params={"target": target}, headers=automation.headers, timeout=5)
    if response.status_code != 200:
        raise LearnerError(f"GET /jobs?target={target} answered {response.status_code} (README, task 1)")
    try:
        return [dict(item) for item in response.json()["jobs"] if item.get("target") == target]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise LearnerError(f'GET /jobs must answer {{"jobs": [...]}}, it answered {response.text[:200]}') from None


# ---------------------------------------------------------------------- the API


@check(points=8, section="API", timeout=90, hint="Validate the body with pydantic models (FastAPI then answers "
       "422 naming the field), check the bearer token with a dependency, derive the job id from fingerprint and "
       "startsAt and create it only once (SET NX), and let /readyz ping the broker.")  # fmt: skip
def test_the_webhook_authenticates_validates_and_deduplicates(automation: Automation, lab_namespace: str) -> None:
    """401 without the token, 422 naming a bad field, one job per alert however often it is delivered"""
    automation.start_api()
    first = alert("ShopServiceUnavailable", lab_namespace, "web")
    second = alert("ShopServiceUnavailable", lab_namespace, "api")
    resolved = alert("ShopServiceUnavailable", lab_namespace, "old", status="resolved")
    for headers, what in (
        ({}, "no token"),
        ({"Authorization": "Bearer not-the-token"}, "a wrong token"),
        ({"Authorization": "Bearer"}, "an empty bearer token"),
        ({"Authorization": f"Basic {automation.token}"}, "the token under another scheme"),
    ):
        code = automation.post(delivery(first), headers=headers).status_code
        assert code == 401, f"POST /alerts with {what} answered {code}, not 401"
    bad_date = delivery(first)
    bad_date["alerts"][0]["startsAt"] = "yesterday"
    no_labels = delivery(second)
    del no_labels["alerts"][0]["labels"]
    for payload, field_name in ((bad_date, "startsAt"), (no_labels, "labels")):
        response = automation.post(payload)
        assert response.status_code == 422, (
            f"a delivery with a bad {field_name} answered {response.status_code}, not 422"
        )
        assert field_name in response.text, (
            f"the 422 for a bad {field_name} does not name the field: {response.text[:200]}"
        )
    ids = automation.deliver(first, second, resolved)
    assert len(ids) == 2 and len(set(ids)) == 2, f"two firing alerts (and one resolved) made jobs {ids}, not two"
    again = automation.deliver(first, second, resolved)
    assert again == ids, f"delivering the same alerts again made jobs {again}; the first delivery made {ids}"
    depth = automation.redis().llen(f"{automation.prefix}:{QUEUE}")
    assert depth == 2, (
        f"the queue {automation.prefix}:{QUEUE} holds {depth} messages after two deliveries of 2 alerts, not 2"
    )
    job = automation.job(ids[0])
    assert job["state"] == "queued" and job["attempts"] == 0, f"a job no worker took is {summary(job)}"
    code = httpx.get(f"{automation.url}/jobs/{ids[0]}", timeout=5).status_code
    assert code == 401, f"GET /jobs/{{id}} without the token answered {code}, not 401"
    assert httpx.get(f"{automation.url}/jobs/no-such-job", headers=automation.headers, timeout=5).status_code == 404
    assert httpx.get(f"{automation.url}/readyz", timeout=5).status_code == 200, "/readyz is not 200 with Redis up"
    samples = scrape(f"{automation.url}/metrics")
    assert samples.get("automation_webhook_seconds_count"), "/metrics has no histogram automation_webhook_seconds"
    queued = [v for labels, v in samples.get("automation_jobs", []) if labels.get("state") == "queued"]
    assert queued and queued[0] >= 2, f'/metrics says automation_jobs{{state="queued"}} is {queued}, 2 are queued'
    depths = [v for _, v in samples.get("automation_queue_depth", [])]
    assert depths and depths[0] >= 2, f"/metrics says automation_queue_depth is {depths}, 2 messages wait"
    closed, port = free_port(), free_port()
    automation.start_api(port=port, OPSLAB_REDIS_URL=f"redis://127.0.0.1:{closed}/0")
    code = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code
    assert code == 503, f"/readyz answered {code} while the broker was unreachable, not 503"


@check(points=4, section="API", timeout=60, hint="Map alert names to runbooks in one table: ShopServiceUnavailable "
       "scale-up, ShopPodsNotReady rollout-undo, ShopPodsCrashLooping rollout-restart, KubeNodeUnschedulable "
       "uncordon, TerraformDriftDetected terraform-reapply, anything else escalate.")  # fmt: skip
def test_each_alert_gets_the_right_runbook(automation: Automation, lab_namespace: str) -> None:
    """each alert name gets its runbook and target, and an alert nobody planned for goes to a human"""
    automation.start_api()
    node_alert = alert("KubeNodeUnschedulable", "", "", node="kwok-node-3")
    drift = alert("TerraformDriftDetected", "", "", workspace="staging")
    for item in (node_alert, drift):
        for name in ("namespace", "deployment", "service"):
            item["labels"].pop(name)
    cases = [
        (alert("ShopServiceUnavailable", lab_namespace, "catalog"), "scale-up", f"{lab_namespace}/catalog"),
        (alert("ShopPodsNotReady", lab_namespace, "cart"), "rollout-undo", f"{lab_namespace}/cart"),
        (alert("ShopPodsCrashLooping", lab_namespace, "payments"), "rollout-restart", f"{lab_namespace}/payments"),
        (node_alert, "uncordon", "kwok-node-3"),
        (drift, "terraform-reapply", "staging"),
        (alert("ShopSaturated", lab_namespace, "gateway"), "escalate", None),
        (alert("SomethingNobodyPlannedFor", lab_namespace, "gateway"), "escalate", None),
    ]
    wrong = []
    for item, runbook, target in cases:
        (ident,) = automation.deliver(item)
        job = automation.job(ident)
        if job.get("runbook") != runbook or (target is not None and job.get("target") != target):
            wrong.append(f"{item['labels']['alertname']} -> {job.get('runbook')} on {job.get('target')} "
                         f"(expected {runbook}{f' on {target}' if target else ''})")  # fmt: skip
    assert not wrong, "; ".join(wrong)


@check(points=5, section="API", timeout=60, hint="No blocking call in an async def: query Prometheus with "
       "httpx.AsyncClient (and a timeout) after the job is queued, e.g. in a task; sync Redis calls go through "
       "asyncio.to_thread or redis.asyncio.")  # fmt: skip
def test_a_slow_prometheus_delays_neither_deliveries_nor_health_checks(
    automation: Automation, lab_namespace: str
) -> None:
    """with Prometheus answering after 3 s, deliveries are acknowledged at once and /healthz stays fast"""
    with slow_prometheus(3.0) as (prometheus, seen):
        automation.start_api(OPSLAB_PROMETHEUS_URL=prometheus)
        took: list[float] = []
        failed: list[str] = []
        ids: list[str] = []

        def post() -> None:
            began = time.perf_counter()
            try:
                ids.extend(automation.deliver(alert("ShopServiceUnavailable", lab_namespace, "slow")))
            except (LearnerError, httpx.HTTPError) as exc:
                failed.append(str(exc))
            took.append(time.perf_counter() - began)

        poster = threading.Thread(target=post)
        poster.start()
        health: list[float] = []
        ends = time.monotonic() + 4
        while time.monotonic() < ends:
            began = time.perf_counter()
            httpx.get(f"{automation.url}/healthz", timeout=10)
            health.append(time.perf_counter() - began)
            time.sleep(0.1)
        poster.join(15)
        asked = wait_for(lambda: bool(seen), 5)
    assert not failed, failed[0]
    assert took, "the delivery did not finish within 15 s"
    assert asked, "api.py never queried Prometheus (OPSLAB_PROMETHEUS_URL) about the alert: enrich each job (task 1)"
    assert ids, "the delivery answered no job id"
    stored = wait_for(lambda: automation.job(ids[0]).get("evidence"), 8)
    assert stored, "the job's evidence is still empty 8 s later: store what Prometheus said (or why it said nothing)"
    assert took[0] <= 1.0, (
        f"POST /alerts took {took[0]:.1f} s while Prometheus was slow: acknowledge first, enrich after"
    )
    assert max(health) <= 1.5, (
        f"/healthz took up to {max(health):.1f} s while an enrichment waited on Prometheus: the event loop is blocked"
    )


@check(points=5, section="API", timeout=150, hint="Keep the handler small: validate, one SET NX and one enqueue per "
       "alert, answer; enrich later, off the request; no sync dependency or per-request client set-up (open clients "
       "once, in the lifespan). `make bench-automation PATH_=...` measures yours on a quiet machine.")  # fmt: skip
def test_500_concurrent_deliveries_are_acknowledged_quickly(automation: Automation, lab_namespace: str) -> None:
    """500 deliveries from 10 concurrent clients while Prometheus takes 1 s: all accepted, p99 <= 500 ms"""
    with slow_prometheus(SLOW_PROMETHEUS_S) as (prometheus, _):
        automation.start_api(OPSLAB_PROMETHEUS_URL=prometheus)

        def requests(tag: str, count: int) -> list[bytes]:
            return [post_request("/alerts", delivery(alert("LabBurst", lab_namespace, f"{tag}-{i}")), automation.headers)
                    for i in range(count)]  # fmt: skip

        warmed = burst(automation.port, requests("warmup", BURST_WARM_UP), BURST_CLIENTS, BURST_LIMIT_S)
        slow = sum(code == 0 for code, _ in warmed)
        assert not slow, (
            f"{slow} of {BURST_WARM_UP} warm-up deliveries were not answered within {BURST_LIMIT_S:.0f} s "
            "(they take 1-2 s when the API answers first and enriches later)"
        )
        tries: list[float] = []
        for attempt in range(BURST_TRIES):
            results = burst(
                automation.port, requests(f"burst{attempt}", BURST_DELIVERIES), BURST_CLIENTS, BURST_LIMIT_S
            )
            unanswered = sum(code == 0 for code, _ in results)
            assert not unanswered, (
                f"{unanswered} of {len(results)} deliveries were not answered within {BURST_LIMIT_S:.0f} s "
                "(a burst takes 1-2 s when the API answers first and enriches later)"
            )
            refused = [code for code, _ in results if not 200 <= code < 300]
            assert not refused, f"{len(refused)} of {len(results)} deliveries were not accepted (first: {refused[0]})"
            seconds = sorted(s for _, s in results)
            tries.append(seconds[int(len(seconds) * 0.99) - 1])
            if tries[-1] <= BURST_P99_S:
                break
    shown = ", ".join(f"{p * 1000:.0f} ms" for p in tries)
    assert min(tries) <= BURST_P99_S, (
        f"p99 acknowledgement was {shown} in {len(tries)} bursts of {BURST_DELIVERIES} deliveries, above "
        f"{BURST_P99_S * 1000:.0f} ms"
    )
    depth = automation.redis().llen(f"{automation.prefix}:{QUEUE}")
    expected = BURST_WARM_UP + BURST_DELIVERIES * len(tries)
    assert depth == expected, f"{expected} distinct alerts left {depth} messages queued"


@check(points=4, section="API", timeout=240, hint="Run schemathesis against your /openapi.json: every endpoint must "
       "answer 4xx to nonsense, never 5xx; declare the status codes you answer (responses=...).")  # fmt: skip
def test_fuzzing_the_openapi_schema_finds_no_server_error(automation: Automation, tmp_path: Path) -> None:
    """schemathesis, generating requests from the API's own OpenAPI schema, gets no 5xx"""
    automation.start_api()
    schema = httpx.get(f"{automation.url}/openapi.json", timeout=10)
    assert schema.status_code == 200, f"/openapi.json answered {schema.status_code}: FastAPI serves it unless disabled"
    paths = schema.json().get("paths", {})
    body = ((paths.get("/alerts") or {}).get("post") or {}).get("requestBody")
    assert body, "your schema describes no body for POST /alerts: declare it with a pydantic model so it can be fuzzed"
    assert "/jobs/{" in " ".join(paths), "your schema has no GET /jobs/{id}"
    args = [
        python(), "-m", "schemathesis.cli", "run", f"{automation.url}/openapi.json",
        "--checks", "not_a_server_error", "--max-examples", "40", "--seed", "5", "--generation-database", "none",
        "--header", f"Authorization: Bearer {automation.token}", "--request-timeout", "10",
        "--report-dir", str(tmp_path / "schemathesis"),
    ]  # fmt: skip
    run = run_learner(args, cwd=tmp_path, timeout=200, what="schemathesis")
    if run.returncode != 0:
        failures = [line.strip() for line in run.stdout.splitlines() if "Server error" in line or "500" in line]
        detail = failures[0] if failures else run.tail(2)
        raise AssertionError(f"schemathesis found requests your API fails on: {detail[:300]}")


# ---------------------------------------------------------------------- the workers, end to end


def shop_rules(run_id: str) -> dict[str, Any]:
    selector = f'opslab_run="{run_id}"'
    return {
        "groups": [
            {
                "name": f"grading-{run_id}",
                "interval": "5s",
                "rules": [
                    {
                        "alert": "ShopServiceUnavailable",
                        "expr": f"lab_service_ready_replicas{{{selector}}} == 0 "
                        f"unless lab_service_unready_replicas{{{selector}}} > 0",
                        "for": "5s",
                        "labels": {"severity": "critical"},
                        "annotations": {"summary": "{{ $labels.deployment }} has no ready replica"},
                    }
                ],
            }
        ]
    }


@check(points=8, section="Workers", timeout=240, hint="Run the runbook the alert names against the alert's "
       "namespace/deployment: scale-up reads the opslab.dev/replicas annotation, scales, and waits until every "
       "replica is ready before the job succeeds.")  # fmt: skip
def test_an_alert_through_alertmanager_heals_a_service_scaled_to_zero(
    automation: Automation, cell: Cell, run_id: str
) -> None:
    """catalog scaled to zero under load: the alert fires, Alertmanager delivers it, a job scales it back"""
    settings = opslab_settings.load()
    cell.deploy("catalog", 3)
    cell.wait_rolled_out("catalog")
    services = Services(cell)
    load = Load(services, ["catalog"], rps=10, limit=200)
    try:
        automation.start_api()
        automation.start_workers()
        run_config.add_target(settings, run_id, f"127.0.0.1:{services.port}", {})
        run_config.add_rules(settings, run_id, shop_rules(run_id))
        run_config.add_webhook_route(settings, run_id, f"{automation.url}/alerts", automation.token_file)
        prometheus = f"http://127.0.0.1:{settings.ports.prometheus}"

        def scraped() -> bool:
            query = f'lab_service_ready_replicas{{opslab_run="{run_id}",deployment="catalog"}} == 3'
            body = httpx.get(f"{prometheus}/api/v1/query", params={"query": query}, timeout=5).json()
            return bool(body["data"]["result"])

        assert wait_for(scraped, 40, interval=1), "grader: Prometheus did not scrape the run's service in 40 s"
        cell.scale("catalog", 0)
        target = f"{cell.namespace}/catalog"

        def healed() -> dict[str, Any] | None:
            found = jobs_for(automation, target)
            done = [j for j in found if j.get("state") in {"succeeded", "failed", "dead", "escalated"}]
            return done[0] if done else None

        job = wait_for(healed, 150, interval=1)
        found = jobs_for(automation, target)
        assert found, f"no job for {target} within 150 s of scaling it to zero: did the alert reach POST /alerts?"
        assert job, f"the job for {target} did not finish within 150 s: {summary(found[0])}"
        assert job["runbook"] == "scale-up", f"the job ran {job['runbook']!r}, not scale-up"
        assert job["state"] == "succeeded", f"the job did not succeed: {summary(job)}"
        assert job.get("result"), "the job's record does not say what was done (result)"
        wanted = cell.read("catalog").spec.replicas
        assert wanted == 3, f"the job scaled {target} to {wanted} replicas; its opslab.dev/replicas annotation says 3"
        assert cell.rolled_out("catalog"), f"the job succeeded but {target} is not back at 3 ready replicas"
        recovered = wait_for(lambda: load.success_ratio("catalog", 8)[0] >= 0.99, 30, interval=1)
        ratio, count = load.success_ratio("catalog", 8)
        assert recovered, f"catalog answers {ratio:.0%} of {count} requests in the last 8 s after the fix"
    finally:
        run_config.remove(settings, {run_id})
        load.close()
        services.close()


def artifacts_story(job: dict[str, Any], root: Path) -> str:
    """What is wrong with the job's ansible-runner artifacts ("" when they tell a complete run)."""
    where = job.get("artifacts")
    if not where:
        return "the job's record has no artifacts directory (ansible-runner's artifacts/<ident>)"
    path = Path(str(where))
    if not path.is_dir() or not path.resolve().is_relative_to(root.resolve()):
        return f"the job's artifacts {where} are not a directory under OPSLAB_AUTOMATION_ARTIFACTS"
    runs = [p for p in [path, *path.iterdir()] if (p / "status").is_file()]
    if not runs:
        return f"no ansible-runner run (status, rc, job_events/) under {where}"
    run = runs[-1]
    status = (run / "status").read_text().strip()
    events = [json.loads(p.read_text()) for p in sorted((run / "job_events").glob("*.json"))]
    modules = {str((e.get("event_data") or {}).get("resolved_action") or (e.get("event_data") or {}).get("task_action", ""))
               for e in events}  # fmt: skip
    if status != "successful":
        return f"the playbook's run ended {status!r}"
    if not any(name.startswith("kubernetes.core.") for name in modules):
        return f"the playbook used no kubernetes.core module (it ran {sorted(m for m in modules if m)[:5]})"
    return ""


@check(points=8, section="Workers", timeout=240, hint="Run playbooks/ through ansible_runner.run with a private "
       "data dir per job under OPSLAB_AUTOMATION_ARTIFACTS; look before you act (k8s_info) and roll back with "
       "kubernetes.core.k8s_rollback only when the Deployment is unhealthy.")  # fmt: skip
def test_the_ansible_runbook_rolls_back_a_bad_release_once(automation: Automation, cell: Cell) -> None:
    """a bad rollout is rolled back by the Ansible playbook (artifacts kept); a second alert changes nothing"""
    cell.deploy("cart", 2)
    cell.wait_rolled_out("cart")
    cell.break_rollout("cart")

    def broken() -> bool:
        d = cell.read("cart")
        seen = (d.status.observed_generation or 0) >= (d.metadata.generation or 0) > 1
        return (
            seen and (d.status.updated_replicas or 0) >= 1 and (d.status.ready_replicas or 0) < (d.spec.replicas or 0)
        )

    stuck = wait_for(broken, 60)
    assert stuck, "grader: the bad release of cart did not break its rollout within 60 s"
    automation.start_api()
    automation.start_workers()
    (ident,) = automation.deliver(alert("ShopPodsNotReady", cell.namespace, "cart"))
    job = automation.wait_state(ident, {"succeeded", "failed", "dead", "escalated"}, 150)
    assert job.get("runbook") == "rollout-undo", f"the job ran {job.get('runbook')!r}, not rollout-undo"
    assert job.get("state") == "succeeded", f"the rollback job did not succeed within 150 s: {summary(job)}"
    assert cell.template_is_good("cart"), "the job succeeded but cart still runs the bad release"
    assert wait_for(lambda: cell.rolled_out("cart"), 30), "cart is not back at 2 ready replicas 30 s after the rollback"
    problem = artifacts_story(job, automation.artifacts)
    assert not problem, problem
    revision = cell.read("cart").metadata.annotations.get("deployment.kubernetes.io/revision")
    (second,) = automation.deliver(alert("ShopPodsNotReady", cell.namespace, "cart", starts=later()))
    assert second != ident, "a new firing of the alert (a later startsAt) was taken for the same job"
    again = automation.wait_state(second, {"succeeded", "failed", "dead", "escalated"}, 120)
    assert again.get("state") in {"succeeded", "escalated"}, f"the second rollback job ended {summary(again)}"
    time.sleep(0.5)
    now = cell.read("cart").metadata.annotations.get("deployment.kubernetes.io/revision")
    assert cell.template_is_good("cart") and now == revision, (
        f"a second alert for the healthy cart rolled it back again (revision {revision} -> {now}): the runbook "
        "must look before it acts"
    )


@check(points=8, section="Workers", timeout=240, hint="Take the lease <ns>:lock:<namespace>/<deployment> with SET "
       "NX PX before touching a Deployment; when it is held raise, and let Dramatiq's Retries (min_backoff, "
       "max_retries) retry with backoff; after the last retry the message goes to the dead-letter queue.")  # fmt: skip
def test_a_held_lease_makes_jobs_wait_with_backoff_then_dead_letter(automation: Automation, cell: Cell) -> None:
    """while the grader holds a Deployment's lease nobody touches it; retries back off; exhausted jobs are dead-lettered"""
    for name in ("orders", "stuck"):
        cell.deploy(name, 2)
    for name in ("orders", "stuck"):
        cell.wait_rolled_out(name)
        cell.scale(name, 0)
    store = automation.redis()
    store.set(automation.lock_key(cell.namespace, "orders"), "grader", px=120_000)
    store.set(automation.lock_key(cell.namespace, "stuck"), "grader", px=600_000)
    automation.start_api()
    automation.start_workers()
    orders, stuck, ghost = automation.deliver(
        alert("ShopServiceUnavailable", cell.namespace, "orders"),
        alert("ShopServiceUnavailable", cell.namespace, "stuck"),
        alert("ShopServiceUnavailable", cell.namespace, "ghost"),  # no such Deployment: a permanent error
    )
    ends = time.monotonic() + 15
    while time.monotonic() < ends:
        for name in ("orders", "stuck"):
            replicas = cell.read(name).spec.replicas
            assert replicas == 0, f"a job scaled {name} to {replicas} while the grader held its lease"
        time.sleep(0.5)
    missing = automation.wait_state(ghost, {"succeeded", "failed", "dead", "escalated"}, 20)
    assert missing.get("state") == "failed" and int(missing.get("attempts") or 0) == 1, (
        f"a job for a Deployment that does not exist should fail at once, without retries: {summary(missing)}"
    )
    tried = automation.job(orders)
    attempts = int(tried.get("attempts") or 0)
    assert attempts <= 8, f"the job was tried {attempts} times in 15 s while the lease was held: no backoff"
    assert tried.get("state") not in {"dead", "failed"}, f"the job gave up within 15 s: {summary(tried)}"
    store.delete(automation.lock_key(cell.namespace, "orders"))
    done = automation.wait_state(orders, {"succeeded", "failed", "dead", "escalated"}, 90)
    assert done.get("state") == "succeeded", f"once the lease was free the job did not succeed: {summary(done)}"
    assert wait_for(lambda: cell.rolled_out("orders"), 30), "orders is not back at 2 ready replicas"
    dead = automation.wait_state(stuck, {"succeeded", "failed", "dead", "escalated"}, 120)
    assert dead.get("state") == "dead", (
        f"a job whose lease never freed is not dead after 120 more seconds: {summary(dead)}"
    )
    letters = store.zcard(f"{automation.prefix}:{QUEUE}.XQ")
    assert letters >= 1, f"the job is dead but Dramatiq's dead-letter queue {automation.prefix}:{QUEUE}.XQ is empty"


@check(points=8, section="Workers", timeout=240, hint="Let Dramatiq acknowledge after the actor returns (its default), "
       "skip only jobs that finished, give the broker a short heartbeat_timeout, and give the lease an expiry "
       "so a dead worker's lease frees itself.")  # fmt: skip
def test_a_worker_killed_mid_job_leaves_it_to_be_redone_once(automation: Automation, cell: Cell) -> None:
    """kill -9 while a job waits on its change: after a restart the job is redone and completes once"""
    cell.deploy("payments", 2, held=True)
    cell.scale("payments", 0)
    automation.start_api()
    workers = automation.start_workers()
    (ident,) = automation.deliver(alert("ShopServiceUnavailable", cell.namespace, "payments"))

    def mid_job() -> bool:
        return automation.job(ident).get("state") == "running" and cell.read("payments").spec.replicas == 2

    assert wait_for(mid_job, 60), (
        f"the job was not running with payments scaled back within 60 s: {summary(automation.job(ident))}"
    )
    ttl = automation.redis().pttl(automation.lock_key(cell.namespace, "payments"))
    workers.kill()
    assert ttl != -2, f"no lease {automation.lock_key(cell.namespace, 'payments')} while the job ran"
    assert ttl > 0, "the lease has no expiry: a worker that dies holding it would block the Deployment forever"
    cell.release_hold("payments")
    automation.start_workers()
    job = automation.wait_state(ident, {"succeeded", "failed", "dead", "escalated"}, 120)
    assert job.get("state") == "succeeded", f"the job was not redone within 120 s of the restart: {summary(job)}"
    assert int(job.get("attempts") or 0) >= 2, f"the job says it ran {job.get('attempts')} times; it was killed once"
    assert cell.rolled_out("payments"), "the job succeeded but payments is not at 2 ready replicas"
    assert len(jobs_for(automation, f"{cell.namespace}/payments")) == 1, "the redone job became more than one job"


@check(points=4, section="Workers", timeout=180, hint="Before running a runbook, count it against its service in a "
       "sorted set of the last 10 minutes (ZADD the job id, ZREMRANGEBYSCORE the old, ZCARD); past 3, end the job "
       "escalated and page a human instead.")  # fmt: skip
def test_a_remediation_storm_is_stopped_by_the_rate_limit(automation: Automation, cell: Cell) -> None:
    """six alerts about one service in a minute: three runbooks run, the rest are escalated to a human"""
    cell.deploy("search", 1)
    cell.wait_rolled_out("search")
    automation.start_api()
    automation.start_workers()
    storm = [alert(name, cell.namespace, "search", starts=later(-i)) for i, name in
             enumerate(["ShopServiceUnavailable", "ShopPodsCrashLooping"] * 3)]  # fmt: skip
    idents = automation.deliver(*storm)
    assert len(set(idents)) == len(storm), f"six different alerts made {len(set(idents))} jobs"
    finished = [automation.wait_state(i, {"succeeded", "failed", "dead", "escalated"}, 80) for i in idents]
    states = [job.get("state") for job in finished]
    ran = [job for job in finished if job.get("state") in {"succeeded", "failed", "dead"}]
    assert None not in states and "running" not in states and "queued" not in states, (
        f"not every job of the storm finished within 80 s: {states}"
    )
    assert len(ran) <= 3, f"{len(ran)} runbooks ran against one service within a minute ({states}): no rate limit"
    assert len(ran) == 3, f"only {len(ran)} of the 3 runbooks the limit allows ran ({states})"
    assert states.count("escalated") >= 3, f"the jobs past the limit were not escalated to a human: {states}"
    assert cell.read("search").spec.replicas == 1, "the storm left search at a size its annotation (1) does not say"
    assert cell.rolled_out("search"), "search is not healthy after the storm"


# ---------------------------------------------------------------------- the health agent


@check(points=8, section="Agent", timeout=180, hint="Count failed probes per target and act at the third in a row "
       "(reset the count on success); enqueue a rollout-restart job through the same path as the API; export "
       "opslab_health_score{service} as a gauge.")  # fmt: skip
def test_the_health_agent_heals_a_broken_endpoint_without_an_alert(automation: Automation, cell: Cell) -> None:
    """two failed probes in a row change nothing; an endpoint that keeps failing with Ready pods is restarted"""
    cell.deploy("frontend", 2)
    cell.wait_rolled_out("frontend")
    services = Services(cell)
    try:
        automation.start_workers()
        port = free_port()
        target = {"service": "frontend", "url": services.url("frontend"), "namespace": cell.namespace,
                  "deployment": "frontend"}  # fmt: skip
        automation.start_agent([target], port, interval=1)
        metrics = f"http://127.0.0.1:{port}/metrics"

        def score() -> float | None:
            values = [
                v for labels, v in scrape(metrics).get("opslab_health_score", []) if labels.get("service") == "frontend"
            ]
            return values[0] if values else None

        assert wait_for(lambda: score() == 1, 20), f'opslab_health_score{{service="frontend"}} is {score()}, not 1'
        before = {p.metadata.name for p in cell.pods("frontend")}
        services.fail_once("frontend", 2)
        assert wait_for(lambda: services.pending_failures("frontend") == 0, 15), "the agent does not probe the endpoint"
        restarted = wait_for(lambda: {p.metadata.name for p in cell.pods("frontend")} != before, 6)
        assert not restarted, "two failed probes in a row made the agent restart frontend: act at the third"
        broken = services.break_endpoint("frontend")
        lowest = wait_for(lambda: (s := score()) is not None and s < 1 and s, 15)
        assert lowest, "opslab_health_score stayed 1 while every probe of the endpoint failed"
        healed = wait_for(lambda: services.answer("frontend") == 200 and cell.rolled_out("frontend"), 90, interval=1)
        assert healed, "the endpoint kept failing for 90 s: the agent did not restart frontend"
        assert not ({p.metadata.name for p in cell.pods("frontend")} & broken), "frontend still runs a broken pod"
        assert wait_for(lambda: score() == 1, 20), f"opslab_health_score is {score()} after the fix, not back to 1"
    finally:
        services.close()
