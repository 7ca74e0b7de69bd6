"""The health agent: probes the services it is given, exports a health score, and heals on its own.

Run with ``python agent.py``. Every OPSLAB_AGENT_INTERVAL seconds it probes each target of
OPSLAB_AGENT_TARGETS (a JSON list of {service, url, namespace, deployment}): the service's
endpoint must answer 2xx within 2 s, and its Deployment must have every wanted replica available.
The score is the share of probes that pass (1 healthy, 0 down), exported on
127.0.0.1:OPSLAB_AGENT_PORT/metrics as opslab_health_score{service}.

One failed probe is noise: only THRESHOLD failures in a row of the endpoint enqueue a job (a
rollout restart of the Deployment, alert name HealthProbeFailing), the same way the API does, so
the workers' lease, retries and rate limit apply. No alert has to fire first.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import jobs
import runbooks
import workers
from prometheus_client import Counter, Gauge, start_http_server

THRESHOLD = 3
INTERVAL_S = float(os.environ.get("OPSLAB_AGENT_INTERVAL", "5"))
log = logging.getLogger("agent")

SCORE = Gauge("opslab_health_score", "Share of the service's probes that pass (1 healthy, 0 down)", ["service"])
FAILURES = Counter("opslab_health_probe_failures", "Failed probes", ["service", "probe"])
HEALS = Counter("opslab_health_remediations", "Jobs the agent enqueued", ["service"])


@dataclass
class Target:
    service: str
    url: str
    namespace: str
    deployment: str
    failures: int = 0
    streak_began: str = ""


def load_targets(path: Path) -> list[Target]:
    entries = json.loads(path.read_text())
    return [Target(e["service"], e["url"], e["namespace"], e["deployment"]) for e in entries]


async def probe_endpoint(http: httpx.AsyncClient, target: Target) -> bool:
    try:
        response = await http.get(target.url)
    except httpx.HTTPError:
        return False
    return response.is_success


def probe_deployment(target: Target) -> bool:
    try:
        deployment = runbooks.apps_api().read_namespaced_deployment(target.deployment, target.namespace)
    except Exception:  # an API error or an API server that does not answer: the probe failed
        return False
    return runbooks.rolled_out(deployment)


async def check(http: httpx.AsyncClient, target: Target) -> None:
    endpoint_ok, deployment_ok = await asyncio.gather(
        probe_endpoint(http, target), asyncio.to_thread(probe_deployment, target)
    )
    SCORE.labels(target.service).set((endpoint_ok + deployment_ok) / 2)
    if not deployment_ok:
        FAILURES.labels(target.service, "deployment").inc()
    if endpoint_ok:
        target.failures, target.streak_began = 0, ""
        return
    FAILURES.labels(target.service, "endpoint").inc()
    target.failures += 1
    target.streak_began = target.streak_began or dt.datetime.now(dt.UTC).isoformat()
    if target.failures < THRESHOLD:
        log.info("%s: endpoint probe failed (%d of %d before acting)", target.service, target.failures, THRESHOLD)
        return
    job = jobs.Job(
        id=jobs.job_id(f"agent:{target.namespace}/{target.deployment}", target.streak_began),
        runbook="rollout-restart", target=f"{target.namespace}/{target.deployment}",
        alertname="HealthProbeFailing", service=target.service,
    )  # fmt: skip
    if await asyncio.to_thread(workers.enqueue, job):
        HEALS.labels(target.service).inc()
        log.warning(
            "%s: %d failed probes in a row: enqueued job %s (rollout restart)", target.service, target.failures, job.id
        )
    target.failures, target.streak_began = 0, ""


async def main() -> None:
    targets = load_targets(Path(os.environ["OPSLAB_AGENT_TARGETS"]))
    start_http_server(int(os.environ.get("OPSLAB_AGENT_PORT", "8086")), addr="127.0.0.1")
    for target in targets:
        SCORE.labels(target.service).set(1)
    async with httpx.AsyncClient(timeout=2) as http:
        while True:
            began = time.monotonic()
            for failed in await asyncio.gather(*(check(http, t) for t in targets), return_exceptions=True):
                if isinstance(failed, Exception):  # Redis or the queue hiccuped: probe again next round
                    log.warning("a probe round failed: %s", failed)
            await asyncio.sleep(max(0.0, INTERVAL_S - (time.monotonic() - began)))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(main())
