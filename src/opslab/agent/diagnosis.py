"""From evidence to a diagnosis: the reasoning the oracle and the deterministic model share.

``Evidence`` is what the read tools show (workloads, their revisions and pods, memory, nodes, the
SLIs); ``diagnose`` turns it into ``Diagnosis`` rows, each a fault in the incident vocabulary with
the one action that mitigates it and why. It is pure: the same evidence gives the same answer, so it
is unit-tested without a cluster, and whoever gathers the evidence (the oracle through the toolbox,
a model through tool calls) reasons the same way.

The rules, in order: a Deployment below its intended replicas lost capacity (scale back); pods of
the current revision that crash, are OOMKilled, grow past ``LEAKING_BYTES`` or never get ready came
with that revision (roll back); a NotReady node is cordoned and drained; an SLI that is bad (in
``lasting``) at a service whose callees are fine is that service's own fault, blamed on its latest
release if one happened recently (an image change: bad-rollout or latency; a CPU limit change with
slow requests: cpu-throttling), and left alone otherwise: no change, nothing to undo, no guessing.
"""

from __future__ import annotations

import calendar
import itertools
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from opslab.shop.topology import ROUTES

ERROR_BAD, SLOW_BAD = 0.05, 0.2
"""An SLI is bad above these: the share of requests that fail, and the share slower than the objective."""
ERROR_OK, SLOW_OK = 0.02, 0.05
"""An SLI is healthy below these (a margin under the bad thresholds, so recovery is real)."""
READY_GRACE = 25.0
"""Seconds a new pod may stay unready before it counts as failing readiness."""
LEAKING_BYTES = 200 * 2**20
"""A pod's simulated working set is about 96 MiB; above this, it is growing."""
SETTLING = 30.0
"""Seconds after a revision is created before its SLIs are its own (the SLI windows are 25 s)."""
RECENT = 300.0
"""Only a ReplicaSet created this recently is a release to blame: a rollback re-uses an old one."""
QUIET_REVISION_AGE = 90.0
"""A revision younger than this may still show a fault (a leak takes about a minute): keep watching."""
SLI_QUERIES = {"errors": "shop:sli_error_ratio:rate25s", "slow": "shop:sli_slow_ratio:rate25s"}
MEMORY_QUERY = "shop_container_memory_working_set_bytes"


@dataclass
class Evidence:
    deployments: list[dict[str, Any]]
    histories: dict[str, list[dict[str, Any]]]
    """Each Deployment's revisions, oldest first (the rollout_history tool)."""
    pods: list[dict[str, Any]]
    nodes: list[dict[str, Any]]
    errors: dict[str, float] = field(default_factory=dict)
    slow: dict[str, float] = field(default_factory=dict)
    memory: dict[str, float] = field(default_factory=dict)
    """Working set by pod name."""
    events: list[dict[str, Any]] = field(default_factory=list)
    """The shop's newest events (the events tool): time, type, reason, object, message."""
    now: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Diagnosis:
    service: str
    fault_type: str
    tool: str
    arguments: dict[str, Any]
    why: str


def callees() -> dict[str, set[str]]:
    """Who each service calls, from the shop's routes."""
    graph: dict[str, set[str]] = {"gateway": set()}
    for route in ROUTES:
        chain = ["gateway", *route.calls]
        for caller, callee in itertools.pairwise(chain):
            graph.setdefault(caller, set()).add(callee)
            graph.setdefault(callee, set())
    return graph


def age(stamp: str, now: float) -> float:
    """Seconds from a Kubernetes timestamp (RFC 3339, UTC; a MicroTime's fraction is dropped) to ``now``."""
    whole = stamp.split(".", maxsplit=1)[0].removesuffix("Z")
    return now - calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))


def sli(rows: Iterable[dict[str, Any]], label: str = "service") -> dict[str, float]:
    """A query tool's rows as {label value: value}, NaN left out."""
    return {str(r["metric"].get(label, "")): float(r["value"]) for r in rows if r["value"] == r["value"]}


def bad_signals(evidence: Evidence) -> set[tuple[str, str]]:
    """(service, "errors" | "slow") for every SLI above its bad threshold."""
    return {(s, "errors") for s, v in evidence.errors.items() if v > ERROR_BAD} | {
        (s, "slow") for s, v in evidence.slow.items() if v > SLOW_BAD
    }


def release_change(history: list[dict[str, Any]], now: float) -> str:
    """What a Deployment's current revision changed from the one before: image, cpu, or nothing
    (also nothing while it is settling, or when it is an old ReplicaSet made current by a rollback)."""
    if len(history) < 2:
        return ""
    current, previous = history[-1], history[-2]
    created = age(current["created"], now)
    if created < SETTLING or created > RECENT:
        return ""
    if current["image"] != previous["image"]:
        return "image"
    if current["cpu_limit"] != previous["cpu_limit"]:
        return "cpu"
    return ""


QUOTA_REFUSED = "exceeded quota"
"""What the API server says when a ResourceQuota refuses a pod (in a ReplicaSet's FailedCreate event)."""
REFUSAL_RECENT = 120.0
"""Seconds within which a refusal counts: events outlive their cause by an hour, and a ReplicaSet
that is still refused repeats its FailedCreate event more often than this at first."""


def refused_by_quota(e: Evidence, deployment: str) -> str:
    """The message of a recent FailedCreate event that a quota caused for ``deployment``'s current
    ReplicaSet, or "" (an old refusal, or one of an earlier revision, is no evidence now)."""
    history = e.histories.get(deployment) or []
    if not history or not history[-1].get("hash"):
        return ""
    current = f"ReplicaSet/{deployment}-{history[-1]['hash']}"
    for event in reversed(e.events):
        if (
            event.get("reason") == "FailedCreate"
            and event.get("object") == current
            and QUOTA_REFUSED in str(event.get("message", ""))
            and age(str(event.get("time") or "1970-01-01T00:00:00Z"), e.now) <= REFUSAL_RECENT
        ):
            return str(event["message"])
    return ""


def _workload_faults(e: Evidence) -> list[Diagnosis]:
    found: list[Diagnosis] = []
    for d in e.deployments:
        name = d["name"]
        refused = refused_by_quota(e, name) if d["ready"] < d["replicas"] else ""
        if refused:
            # Pods are refused, not failing: what changed is the quota, and Terraform declares it.
            found.append(Diagnosis(name, "quota-exhausted", "terraform_apply", {"config": "platform"},
                                   f"{d['ready']} of {d['replicas']} ready; {refused[:160]}"))  # fmt: skip
            continue
        if d["intended"] is not None and d["replicas"] < d["intended"]:
            found.append(Diagnosis(name, "capacity-loss", "scale", {"service": name, "replicas": d["intended"]},
                                   f"{d['replicas']} replicas, intended {d['intended']}"))  # fmt: skip
            continue
        history = e.histories.get(name) or []
        current_hash = history[-1]["hash"] if history else ""
        current = [p for p in e.pods if p["service"] == name and p["revision_hash"] == current_hash]
        crashing = [p for p in current if p["waiting"] == "CrashLoopBackOff" or p["last_terminated"]]
        growing = [p for p in current if e.memory.get(p["name"], 0) > LEAKING_BYTES]
        undo = {"service": name}
        if growing and not crashing:
            found.append(Diagnosis(name, "memory-leak", "rollout_undo", undo,
                                   f"{len(growing)} pods of the current revision keep growing"))  # fmt: skip
        elif crashing:
            kind = "memory-leak" if any(p["last_terminated"] == "OOMKilled" for p in crashing) else "crash-loop"
            found.append(Diagnosis(name, kind, "rollout_undo", undo, f"{len(crashing)} pods: {kind}"))
        else:
            stuck = [
                p for p in current
                if p["phase"] == "Running" and not p["ready"] and not p["restarts"]
                and age(p["created"], e.now) > READY_GRACE
            ]  # fmt: skip
            if stuck:
                found.append(Diagnosis(name, "failing-readiness", "rollout_undo", undo,
                                       f"{len(stuck)} pods of the current revision never became ready"))  # fmt: skip
    return found


def diagnose(e: Evidence, lasting: set[tuple[str, str]] | None = None) -> list[Diagnosis]:
    """Every fault the evidence shows, with its mitigation. ``lasting``: the bad SLI signals that
    have lasted long enough to act on (default: every bad one, as when an alert has fired)."""
    found = _workload_faults(e)
    for node in e.nodes:
        if not node["ready"]:
            found.append(Diagnosis("node", "node-not-ready", "drain", {"node": node["name"]},
                                   f"node {node['name']} is not Ready ({node['reason']})"))  # fmt: skip
    explained = {f.service for f in found}
    graph = callees()
    lasting = bad_signals(e) if lasting is None else lasting
    for signal in ("errors", "slow"):
        bad = {s for s, sig in bad_signals(e) if sig == signal}
        roots = sorted(s for s in bad if not (graph.get(s, set()) & bad))
        for service in roots:
            if service in explained or (service, signal) not in lasting:
                continue
            change = release_change(e.histories.get(service) or [], e.now)
            if change == "image":
                kind = "bad-rollout" if signal == "errors" else "latency"
            elif change == "cpu" and signal == "slow":
                kind = "cpu-throttling"
            else:
                continue  # no recent change to undo: not ours to guess at
            found.append(Diagnosis(service, kind, "rollout_undo", {"service": service},
                                   f"{signal} on {service} since its last rollout"))  # fmt: skip
            explained.add(service)
    return found


def settled(e: Evidence, seconds: float = QUIET_REVISION_AGE) -> bool:
    """Whether every Deployment's current revision is at least ``seconds`` old (by default, old
    enough to have shown any fault)."""
    return all(
        age((e.histories.get(d["name"]) or [{"created": "1970-01-01T00:00:00Z"}])[-1]["created"], e.now) >= seconds
        for d in e.deployments
    )


def healthy(e: Evidence) -> bool:
    """Every Deployment rolled out and available, and every SLI back under its healthy bound."""
    rolled = all(d["ready"] == d["replicas"] == d["updated"] and not d["unavailable"] for d in e.deployments)
    return rolled and all(v < ERROR_OK for v in e.errors.values()) and all(v < SLOW_OK for v in e.slow.values())


@dataclass
class Persistence:
    """Which bad signals have lasted ``seconds`` (a blip on a busy machine is not a fault)."""

    seconds: float = 8.0
    since: dict[tuple[str, str], float] = field(default_factory=dict)

    def lasting(self, e: Evidence, now: float) -> set[tuple[str, str]]:
        bad = bad_signals(e)
        for key in list(self.since):
            if key not in bad:
                del self.since[key]
        for key in bad:
            self.since.setdefault(key, now)
        return {key for key, first in self.since.items() if now - first >= self.seconds}


def gather(tools: Any) -> Evidence:
    """Evidence through the toolbox's read tools (or anything with the same methods)."""
    deployments = tools.deployments()
    return Evidence(
        deployments=deployments,
        histories={d["name"]: tools.rollout_history(d["name"]) for d in deployments},
        pods=tools.pods(),
        nodes=tools.nodes(),
        errors=sli(tools.query(SLI_QUERIES["errors"])),
        slow=sli(tools.query(SLI_QUERIES["slow"])),
        memory=sli(tools.query(MEMORY_QUERY), label="pod"),
        events=tools.events(limit=100),
    )
