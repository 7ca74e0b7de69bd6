"""The automation API: Alertmanager's webhook in, remediation jobs out.

Run with ``python -m uvicorn api:app --host 127.0.0.1 --port 8085``.

POST /alerts answers as soon as each firing alert is recorded and queued (a job per alert,
deduplicated by fingerprint and start time); enrichment (a PromQL query about the alert's
service) runs afterwards, on the event loop with an async client and a time limit, so a slow
Prometheus never holds up a delivery or a health check.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
import jobs
import redis.asyncio as aioredis
import runbooks
import workers
from fastapi import Depends, FastAPI, HTTPException, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field

PROMETHEUS_URL = os.environ.get("OPSLAB_PROMETHEUS_URL", "http://127.0.0.1:9090")
TOKEN_FILE = Path(os.environ.get("OPSLAB_AUTOMATION_TOKEN_FILE", "token"))
ENRICH_TIMEOUT_S = 2.0
BATCH_WINDOW_S = 0.5


class Labels(BaseModel):
    """An alert's labels: an alert name and any others, all strings."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, str]
    alertname: str = Field(min_length=1)


class Alert(BaseModel):
    """One alert of Alertmanager's webhook (version 4)."""

    model_config = ConfigDict(extra="allow")
    status: Literal["firing", "resolved"]
    labels: Labels
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime
    endsAt: datetime | None = None
    generatorURL: str = ""
    fingerprint: str = Field(min_length=1, max_length=64)


class Webhook(BaseModel):
    """Alertmanager's webhook payload, version 4."""

    model_config = ConfigDict(extra="allow")
    version: Literal["4"]
    groupKey: str
    truncatedAlerts: int = Field(default=0, ge=0)
    status: Literal["firing", "resolved"]
    receiver: str
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    alerts: list[Alert] = Field(max_length=1000)


class Accepted(BaseModel):
    id: str
    runbook: str
    target: str
    duplicate: bool


class Delivery(BaseModel):
    jobs: list[Accepted]
    ignored: int
    """Resolved alerts: they start nothing."""


class JobView(BaseModel):
    id: str
    state: str
    runbook: str
    target: str
    alertname: str
    service: str
    attempts: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    result: str | None
    artifacts: str | None
    log: list[str]
    evidence: dict[str, Any]


registry = CollectorRegistry()
WEBHOOK_SECONDS = Histogram(
    "automation_webhook_seconds", "Time to acknowledge an Alertmanager delivery", registry=registry,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)  # fmt: skip
JOBS_CREATED = Counter("automation_jobs_created", "Jobs created from alerts", ["runbook"], registry=registry)
JOBS = Gauge("automation_jobs", "Jobs by state", ["state"], registry=registry)
QUEUE_DEPTH = Gauge("automation_queue_depth", "Messages waiting in the remediation queue", registry=registry)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.token = TOKEN_FILE.read_text().strip()
    app.state.redis = aioredis.Redis.from_url(jobs.REDIS_URL, socket_timeout=5, socket_connect_timeout=2)
    app.state.http = httpx.AsyncClient(base_url=PROMETHEUS_URL, timeout=ENRICH_TIMEOUT_S)
    app.state.enricher = Enricher(app.state.http, app.state.redis)
    yield
    await app.state.enricher.close()
    await app.state.http.aclose()
    await app.state.redis.aclose()


app = FastAPI(title="opslab automation", version="1.0", lifespan=lifespan)
sys.setswitchinterval(0.0005)  # hand the GIL between the loop and the enqueue threads 10x sooner
bearer = HTTPBearer(auto_error=False)


async def authenticated(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> None:
    """The bearer token check (async: a sync dependency would cost a thread hop per request)."""
    if credentials is None or not secrets.compare_digest(credentials.credentials, request.app.state.token):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"}
        )


class Enricher:
    """Adds evidence to new jobs: what else fires for their services, per Prometheus.

    Jobs wait in a queue; one task takes whatever is there, asks Prometheus once for all their
    services (with a time limit) and writes each job's evidence. A burst of deliveries costs one
    query, not one each, and a slow or absent Prometheus only delays evidence.
    """

    def __init__(self, http: httpx.AsyncClient, store: aioredis.Redis) -> None:
        self.http, self.store = http, store
        self.pending: asyncio.Queue[tuple[str, str]] = asyncio.Queue(maxsize=10_000)
        self.task = asyncio.create_task(self.run())

    def add(self, ident: str, service: str) -> None:
        with contextlib.suppress(asyncio.QueueFull):  # evidence is best effort; the job is queued anyway
            self.pending.put_nowait((ident, service))

    async def run(self) -> None:
        while True:
            batch = [await self.pending.get()]
            await asyncio.sleep(BATCH_WINDOW_S)  # let a burst gather: one query for all of it
            while not self.pending.empty() and len(batch) < 500:
                batch.append(self.pending.get_nowait())
            services = sorted({service for _, service in batch})
            query = 'count by (service, alertname) (ALERTS{alertstate="firing"})'  # few series: filter here
            try:
                response = await self.http.get("/api/v1/query", params={"query": query})
                found = response.json().get("data", {}).get("result", [])
                by_service: dict[str, list[Any]] = {}
                for series in found:
                    by_service.setdefault(series.get("metric", {}).get("service", ""), []).append(series)
                evidence = {s: {"query": query, "firing": by_service.get(s, [])} for s in services}
            except (httpx.HTTPError, ValueError, AttributeError) as exc:
                error = f"{type(exc).__name__}: {exc}"[:200]
                evidence = {s: {"query": query, "error": error} for s in services}
            with contextlib.suppress(aioredis.RedisError):
                pipe = self.store.pipeline()
                for ident, service in batch:
                    pipe.hset(jobs.key("job", ident), "evidence", json.dumps(evidence[service]))
                await pipe.execute()

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@app.post("/alerts", status_code=status.HTTP_202_ACCEPTED, dependencies=[Depends(authenticated)])
async def receive(webhook: Webhook, request: Request) -> Delivery:
    began = time.perf_counter()
    accepted, ignored = [], 0
    for alert in webhook.alerts:
        if alert.status != "firing":
            ignored += 1
            continue
        labels = alert.labels.model_dump()
        chosen = runbooks.pick(labels)
        job = jobs.Job(
            id=jobs.job_id(alert.fingerprint, alert.startsAt.isoformat()),
            runbook=chosen.runbook, target=chosen.target, service=chosen.service,
            alertname=labels["alertname"],
        )  # fmt: skip
        try:
            new = await asyncio.to_thread(workers.enqueue, job)
        except jobs.redis.RedisError as exc:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"the job queue is unavailable: {exc}") from None
        if new:
            JOBS_CREATED.labels(job.runbook).inc()
            request.app.state.enricher.add(job.id, job.service)
        accepted.append(Accepted(id=job.id, runbook=job.runbook, target=job.target, duplicate=not new))
    WEBHOOK_SECONDS.observe(time.perf_counter() - began)
    return Delivery(jobs=accepted, ignored=ignored)


class JobList(BaseModel):
    jobs: list[JobView]


@app.get("/jobs", dependencies=[Depends(authenticated)])
async def list_jobs(target: str | None = None, state: str | None = None) -> JobList:
    """The newest 100 jobs, newest first; ``target`` (namespace/deployment) and ``state`` filter them."""
    found = await asyncio.to_thread(jobs.recent, jobs.connect())
    chosen = [j for j in found if (target is None or j.target == target) and (state is None or j.state == state)]
    return JobList(jobs=[JobView(**asdict(j)) for j in chosen])


@app.get("/jobs/{ident}", dependencies=[Depends(authenticated)], responses={404: {"description": "No such job"}})
async def job(ident: str, request: Request) -> JobView:
    raw = await request.app.state.redis.hgetall(jobs.key("job", ident[:64]))
    if not raw:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {ident!r}")
    return JobView(**asdict(jobs.Job.from_redis(raw)))


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/readyz", responses={503: {"description": "The broker does not answer"}})
async def readyz(request: Request) -> dict[str, str]:
    try:
        await request.app.state.redis.ping()
    except (aioredis.RedisError, OSError) as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"the broker does not answer: {exc}") from None
    return {"status": "ready"}


@app.get("/metrics")
async def metrics(request: Request) -> Response:
    with contextlib.suppress(aioredis.RedisError):
        counts = await request.app.state.redis.hgetall(jobs.key("states"))
        for state in jobs.STATES:
            JOBS.labels(state).set(int(counts.get(state.encode(), 0)))
        QUEUE_DEPTH.set(await request.app.state.redis.llen(jobs.key(jobs.QUEUE)))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
