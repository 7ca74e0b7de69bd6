"""Dramatiq workers: run a job's runbook under a lease on its target.

Run with ``python -m dramatiq workers --processes 1 --threads 4``.

- At least once: Dramatiq's Redis broker acknowledges a message after the actor returns. A worker
  killed mid-job leaves the message unacknowledged; once its heartbeat is 15 s old, another
  worker's maintenance puts it back on the queue and the job is redone (runbooks are idempotent).
- A lease per target (jobs.acquire): a job that finds its Deployment locked retries later.
- Transient failures retry with exponential backoff (1 s, 2 s, 4 s ... at most 6 retries); then
  the message goes to the dead-letter queue (<ns>:remediation.XQ) and the job is marked dead.
- A permanent failure (``throws``) is not retried: the job fails and a human takes over.
- At most RATE_LIMIT runbooks per service in RATE_WINDOW_S: past that the job is escalated.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import dramatiq
import jobs
import runbooks
from dramatiq.brokers.redis import RedisBroker

MAX_RETRIES = 6
broker = RedisBroker(
    url=jobs.REDIS_URL,
    namespace=jobs.NAMESPACE,
    heartbeat_timeout=15_000,
    maintenance_chance=1_000_000,  # every fetch checks for dead workers' messages: quick redelivery
)
dramatiq.set_broker(broker)
ARTIFACTS = Path(os.environ.get("OPSLAB_AUTOMATION_ARTIFACTS", Path(__file__).resolve().parent / "artifacts"))


@dramatiq.actor(queue_name=jobs.QUEUE, max_retries=0)
def job_exhausted(message: dict[str, Any], retries: dict[str, Any]) -> None:
    """Dramatiq calls this when a job gave up: it is in the dead-letter queue now."""
    ident = message["args"][0]
    client = jobs.connect()
    job = jobs.load(client, ident)
    if job is not None and job.state not in {"failed", "succeeded", "escalated"}:
        jobs.update(client, ident, state="dead", finished_at=time.time())
        jobs.append_log(client, ident, f"gave up after {retries.get('retries', '?')} retries: dead-lettered")


@dramatiq.actor(
    queue_name=jobs.QUEUE,
    max_retries=MAX_RETRIES,
    min_backoff=1_000,
    max_backoff=16_000,
    time_limit=180_000,
    throws=(runbooks.PermanentError,),
    on_retry_exhausted="job_exhausted",
)
def remediate(ident: str) -> None:
    client = jobs.connect()
    job = jobs.load(client, ident)
    if job is None or job.state in {"succeeded", "failed", "dead", "escalated"}:
        return  # done before (a duplicate delivery): doing it again could undo someone's fix

    def log(line: str) -> None:
        jobs.append_log(client, ident, line)

    jobs.update(client, ident, state="running", attempts=job.attempts + 1, started_at=job.started_at or time.time())
    if job.runbook == "escalate":
        log(f"no runbook for {job.alertname}: paging a human")
        jobs.update(client, ident, state="escalated", finished_at=time.time(), result="escalated to a human")
        return
    if not jobs.within_rate_limit(client, job.service, ident):
        log(f"{jobs.RATE_LIMIT} runbooks ran against {job.service} in {jobs.RATE_WINDOW_S} s: stopping, paging a human")
        jobs.update(client, ident, state="escalated", finished_at=time.time(), result="rate limit reached")
        return
    if not jobs.acquire(client, job.target, ident):
        log(f"{job.target} is locked by another remediation: retrying later")
        raise runbooks.TransientError(f"{job.target} is locked")
    try:
        result = runbooks.ACTIONS[job.runbook](job.target, log, job_id=ident, artifacts=ARTIFACTS)
    except runbooks.PermanentError as exc:
        log(f"failed for good: {exc}")
        jobs.update(client, ident, state="failed", finished_at=time.time(), result=str(exc))
        raise
    except Exception as exc:
        log(f"attempt {job.attempts + 1} failed: {exc}")
        raise
    finally:
        jobs.release(client, job.target, ident)
    artifacts = str(ARTIFACTS / ident / "artifacts") if job.runbook == "rollout-undo" else None
    jobs.update(client, ident, state="succeeded", finished_at=time.time(), result=result, artifacts=artifacts)
    log(f"done: {result}")


def enqueue(job: jobs.Job) -> bool:
    """Record ``job`` and queue it, unless its alert was seen before; True if it was new."""
    client = jobs.connect()
    if not jobs.claim_alert(client, job):
        return False
    remediate.send(job.id)
    return True
