"""Dramatiq workers: run a job's runbook under a lease on its target (task 2).

Run with ``python -m dramatiq workers --processes 1 --threads 4``.

What they must do (README, task 2):
- acknowledge late: a worker killed mid-job leaves the job to be redone within a minute (the
  Redis broker's heartbeat_timeout and maintenance_chance decide how soon);
- skip a job that already finished, and nothing else (a redelivered job that was running must
  run again);
- take the target's lease (jobs.acquire) before touching it, and retry later when it is held;
- retry transient failures with exponential backoff, a bounded number of times, then leave the
  message in the dead-letter queue (<ns>:remediation.XQ) and mark the job dead;
- fail at once on a permanent error; escalate past the rate limit or when no runbook fits.
"""

from __future__ import annotations

import dramatiq
import jobs
from dramatiq.brokers.redis import RedisBroker

broker = RedisBroker(url=jobs.REDIS_URL, namespace=jobs.NAMESPACE)  # TODO: heartbeat_timeout, maintenance_chance
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=jobs.QUEUE)
def remediate(ident: str) -> None:
    """Run job ``ident``'s runbook (TODO, task 2)."""
    raise NotImplementedError("remediate: task 2")


def enqueue(job: jobs.Job) -> bool:
    """Record ``job`` and queue it, unless its alert was seen before; True if it was new."""
    if not jobs.claim_alert(jobs.connect(), job):
        return False
    remediate.send(job.id)
    return True
