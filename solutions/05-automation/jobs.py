"""Job records, dedupe and per-target locks, in Redis: what the API, the workers and the agent share.

Every key starts with the namespace OPSLAB_AUTOMATION_NAMESPACE (the grader gives each run its
own), so two copies of the service never read each other's jobs:

    <ns>:job:<id>          hash: the job record (see Job)
    <ns>:jobs              sorted set: every job id by creation time
    <ns>:dedupe:<id>       set once per alert (fingerprint + startsAt); its id is the job's
    <ns>:lock:<ns>/<name>  the lease on a Deployment: the job id holding it, with an expiry
    <ns>:states            hash: how many jobs are in each state (for /metrics)
    <ns>:ratelimit:<svc>   sorted set: when runbooks last ran against a service
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

NAMESPACE = os.environ.get("OPSLAB_AUTOMATION_NAMESPACE", "opslab-automation")
REDIS_URL = os.environ.get("OPSLAB_REDIS_URL", "redis://127.0.0.1:6379/0")
QUEUE = "remediation"
LOCK_TTL_MS = 30_000
"""A lease, not a forever-lock: a worker killed while holding it frees the target after 30 s."""
RATE_LIMIT = 3
RATE_WINDOW_S = 600
STATES = ("queued", "running", "succeeded", "failed", "dead", "escalated")
LOG_LINES = 50


def key(*parts: str) -> str:
    return ":".join((NAMESPACE, *parts))


def job_id(fingerprint: str, starts_at: str) -> str:
    """The same alert (fingerprint and start) always gets the same job id: deliveries dedupe on it."""
    return hashlib.sha256(f"{fingerprint}|{starts_at}".encode()).hexdigest()[:16]


@dataclass
class Job:
    """What GET /jobs/{id} answers."""

    id: str
    runbook: str
    target: str
    """namespace/deployment (or the node, for uncordon)."""
    alertname: str
    service: str
    state: str = "queued"
    attempts: int = 0
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    result: str | None = None
    artifacts: str | None = None
    log: list[str] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_redis(self) -> dict[str, str]:
        return {name: json.dumps(value) for name, value in asdict(self).items()}

    @classmethod
    def from_redis(cls, raw: dict[bytes, bytes] | dict[str, str]) -> Job:
        fields = {(k.decode() if isinstance(k, bytes) else k): json.loads(v) for k, v in raw.items()}
        return cls(**{name: fields[name] for name in cls.__dataclass_fields__ if name in fields})


@functools.cache
def connect() -> redis.Redis:
    """One client (and connection pool) per process, shared by its threads."""
    return redis.Redis.from_url(REDIS_URL, socket_timeout=5, socket_connect_timeout=2)


def claim_alert(client: redis.Redis, job: Job) -> bool:
    """Record ``job`` unless its alert was seen before; True if it is new (and must be enqueued)."""
    if not client.set(key("dedupe", job.id), "1", nx=True, ex=86_400):
        return False
    pipe = client.pipeline()
    pipe.hset(key("job", job.id), mapping=job.to_redis())
    pipe.zadd(key("jobs"), {job.id: job.created_at})
    pipe.hincrby(key("states"), job.state, 1)
    pipe.execute()
    return True


def load(client: redis.Redis, ident: str) -> Job | None:
    raw = client.hgetall(key("job", ident))
    return Job.from_redis(raw) if raw else None  # type: ignore[arg-type]


def recent(client: redis.Redis, limit: int = 100) -> list[Job]:
    """The newest ``limit`` jobs, newest first."""
    idents = [ident.decode() for ident in client.zrevrange(key("jobs"), 0, limit - 1)]  # type: ignore[union-attr]
    pipe = client.pipeline()
    for ident in idents:
        pipe.hgetall(key("job", ident))
    return [Job.from_redis(raw) for raw in pipe.execute() if raw]


def update(client: redis.Redis, ident: str, **changes: Any) -> None:
    """Change fields of a job; a state change moves its count in <ns>:states."""
    pipe = client.pipeline()
    if "state" in changes:
        old = client.hget(key("job", ident), "state")
        if old is not None:
            pipe.hincrby(key("states"), json.loads(old), -1)
        pipe.hincrby(key("states"), changes["state"], 1)
    pipe.hset(key("job", ident), mapping={name: json.dumps(value) for name, value in changes.items()})
    pipe.execute()


def append_log(client: redis.Redis, ident: str, line: str) -> None:
    job = load(client, ident)
    if job is None:
        return
    lines = [*job.log, f"{time.strftime('%H:%M:%S')} {line}"][-LOG_LINES:]
    client.hset(key("job", ident), "log", json.dumps(lines))


def state_counts(client: redis.Redis) -> dict[str, int]:
    raw = client.hgetall(key("states"))
    return {name.decode(): int(value) for name, value in raw.items()}  # type: ignore[union-attr]


# ------------------------------------------------------------------ leases and the rate limit

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


def lock_key(target: str) -> str:
    return key("lock", target)


def acquire(client: redis.Redis, target: str, holder: str) -> bool:
    """Take the lease on ``target`` for ``holder`` (a job id); re-entrant for the same holder."""
    if client.set(lock_key(target), holder, nx=True, px=LOCK_TTL_MS):
        return True
    current = client.get(lock_key(target))
    if current is not None and current.decode() == holder:
        client.pexpire(lock_key(target), LOCK_TTL_MS)
        return True
    return False


def release(client: redis.Redis, target: str, holder: str) -> None:
    """Free the lease, only if ``holder`` still holds it (it may have expired and moved on)."""
    client.eval(_RELEASE, 1, lock_key(target), holder)


_RATE = """
redis.call('zremrangebyscore', KEYS[1], 0, ARGV[2] - ARGV[3])
if redis.call('zscore', KEYS[1], ARGV[1]) then return 1 end
if redis.call('zcard', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('zadd', KEYS[1], ARGV[2], ARGV[1])
redis.call('expire', KEYS[1], ARGV[3])
return 1
"""


def within_rate_limit(client: redis.Redis, service: str, ident: str) -> bool:
    """Count this job's run against ``service``'s budget; False when the budget is spent.

    A job counts once however often it is retried or redelivered (its id is the member). One Lua
    script, so that workers asking at the same instant cannot all see room for one more.
    """
    allowed = client.eval(_RATE, 1, key("ratelimit", service), ident, time.time(), RATE_WINDOW_S, RATE_LIMIT)
    return bool(allowed)
