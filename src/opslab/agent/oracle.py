"""The oracle: a deterministic responder that proves every incident in the catalog can be diagnosed
and mitigated with the toolbox alone. It knows nothing of the injector: it reads what on-call
reads (workloads, pods, nodes, rollout history, SLIs) and follows a runbook.

The runbook, in order of evidence:
- a Deployment below its intended size (annotation opslab.dev/replicas): capacity-loss, scale back;
- pods of the current revision crash-looping: crash-loop (OOMKilled: memory-leak), roll back;
- pods of the current revision running but never ready: failing-readiness, roll back;
- a node not Ready: node-not-ready, cordon and drain it;
- errors or slowness: blame the deepest service in the call graph whose own SLI is bad; if its
  current revision changed the image, a release (errors: bad-rollout, slow: latency); if it changed
  the CPU limit, cpu-throttling; roll back.
Nothing found for ``quiet_after`` seconds: submit none / none and change nothing.
"""

from __future__ import annotations

import calendar
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from opslab.agent.toolbox import PolicyDenied, Toolbox, ToolError
from opslab.shop.topology import ROUTES

ERROR_BAD, SLOW_BAD = 0.05, 0.2
"""An SLI is bad above these: the share of requests that fail, and the share slower than the objective."""
READY_GRACE = 25.0
"""Seconds a new pod may stay unready before the oracle calls it failing readiness."""
LEAKING_BYTES = 200 * 2**20
"""A pod's simulated working set is about 96 MiB; above this, it is growing."""
QUIET_REVISION_AGE = 90.0
"""A revision younger than this may still show a fault (a leak takes about a minute): keep watching."""
PERSISTENT = 8.0
"""Seconds an SLI must stay bad before the oracle acts on it (a blip on a busy machine is not a fault)."""
SETTLING = 30.0
"""Seconds after a revision is created before its SLIs are its own (the SLI windows are 25 s)."""
RECENT = 300.0
"""Only a ReplicaSet created this recently is a release the oracle blames: a rollback re-uses an old one."""


@dataclass
class Finding:
    service: str
    fault_type: str
    action: Callable[[], Any]
    why: str


@dataclass
class OracleRun:
    findings: list[tuple[str, str, str]] = field(default_factory=list)
    actions: int = 0
    quiet: bool = False
    escalations: list[str] = field(default_factory=list)
    """Findings the oracle could not act on (the policy denied it, or the tool failed): for a human."""


def _callees() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {"gateway": set()}
    for route in ROUTES:
        chain = ["gateway", *route.calls]
        for caller, callee in itertools.pairwise(chain):
            graph.setdefault(caller, set()).add(callee)
            graph.setdefault(callee, set())
    return graph


def _age(stamp: str) -> float:
    """Seconds since a Kubernetes timestamp (RFC 3339, UTC)."""
    return time.time() - calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))


class Oracle:
    def __init__(self, toolbox: Toolbox, *, poll: float = 3.0, quiet_after: float = 45.0) -> None:
        self.tools = toolbox
        self.poll = poll
        self.quiet_after = quiet_after
        self.handled: set[str] = set()
        self.graph = _callees()
        self.bad_since: dict[tuple[str, str], float] = {}
        """When each (service, signal) was first seen outside its threshold, in this bad stretch."""

    # ------------------------------------------------------------------ evidence

    def _sli(self, name: str) -> dict[str, float]:
        rows = self.tools.query(f"shop:sli_{name}:rate25s")
        return {r["metric"].get("service", ""): r["value"] for r in rows if r["value"] == r["value"]}

    def _release_change(self, service: str) -> str:
        """What the current revision changed from the previous one: image, cpu, or nothing."""
        history = self.tools.rollout_history(service)
        if len(history) < 2:
            return ""
        current, previous = history[-1], history[-2]
        age = _age(current["created"])
        if age < SETTLING:
            return ""  # a rollout under way (maybe a rollback): the 25 s SLI windows still show the old pods
        if age > RECENT:
            return ""  # an old ReplicaSet made current again (a rollback) is not a new release to blame
        if current["image"] != previous["image"]:
            return "image"
        if current["cpu_limit"] != previous["cpu_limit"]:
            return "cpu"
        return ""

    def findings(self) -> list[Finding]:
        found: list[Finding] = []
        deployments = {d["name"]: d for d in self.tools.deployments()}
        for name, d in deployments.items():
            if d["intended"] is not None and d["replicas"] < d["intended"]:
                want = d["intended"]
                found.append(Finding(name, "capacity-loss", partial(self.tools.scale, name, want),
                                     f"{d['replicas']} replicas, intended {want}"))  # fmt: skip
        memory = {
            r["metric"].get("pod", ""): r["value"] for r in self.tools.query("shop_container_memory_working_set_bytes")
        }
        for name in deployments:
            if any(f.service == name for f in found):
                continue
            history = self.tools.rollout_history(name)
            current_hash = history[-1]["hash"] if history else ""
            current = [p for p in self.tools.pods(name) if p["revision_hash"] == current_hash]
            crashing = [p for p in current if p["waiting"] == "CrashLoopBackOff" or p["last_terminated"]]
            growing = [p for p in current if memory.get(p["name"], 0) > LEAKING_BYTES]
            if growing and not crashing:
                found.append(Finding(name, "memory-leak", partial(self.tools.rollout_undo, name),
                                     f"{len(growing)} pods of the current revision keep growing"))  # fmt: skip
                continue
            if crashing:
                kind = "memory-leak" if any(p["last_terminated"] == "OOMKilled" for p in crashing) else "crash-loop"
                found.append(
                    Finding(name, kind, partial(self.tools.rollout_undo, name), f"{len(crashing)} pods: {kind}")
                )
                continue
            stuck = [
                p for p in current
                if p["phase"] == "Running" and not p["ready"] and not p["restarts"] and _age(p["created"]) > READY_GRACE
            ]  # fmt: skip
            if stuck:
                found.append(Finding(name, "failing-readiness", partial(self.tools.rollout_undo, name),
                                     f"{len(stuck)} pods of the current revision never became ready"))  # fmt: skip
        for node in self.tools.nodes():
            if not node["ready"]:
                found.append(Finding("node", "node-not-ready", partial(self.tools.drain, node["name"]),
                                     f"node {node['name']} is not Ready ({node['reason']})"))  # fmt: skip
        found += self._slo_findings({f.service for f in found})
        return found

    def _slo_findings(self, explained: set[str]) -> list[Finding]:
        errors, slow = self._sli("error_ratio"), self._sli("slow_ratio")
        found = []
        for signal, values, threshold in (("errors", errors, ERROR_BAD), ("slow", slow, SLOW_BAD)):
            bad = {s for s, v in values.items() if v > threshold}
            now = time.monotonic()
            for service in values:
                if service in bad:
                    self.bad_since.setdefault((service, signal), now)
                else:
                    self.bad_since.pop((service, signal), None)
            roots = [s for s in bad if not (self.graph.get(s, set()) & bad)]
            for service in sorted(roots):
                if service in explained or now - self.bad_since[(service, signal)] < PERSISTENT:
                    continue  # explained already, or a blip: a signal must last before it is acted on
                change = self._release_change(service)
                if change == "image":
                    kind = "bad-rollout" if signal == "errors" else "latency"
                elif change == "cpu" and signal == "slow":
                    kind = "cpu-throttling"
                else:
                    continue  # no change to undo: not ours to guess at
                found.append(Finding(service, kind, partial(self.tools.rollout_undo, service),
                                     f"{signal} on {service} since its last rollout"))  # fmt: skip
                explained.add(service)
        return found

    # ------------------------------------------------------------------ the loop

    def run(self, deadline: float) -> OracleRun:
        """Respond until everything found is handled and the SLIs are back, or ``deadline`` passes."""
        result = OracleRun()
        began = time.monotonic()
        last_new = began
        while time.monotonic() < deadline:
            new = [f for f in self.findings() if f"{f.service}/{f.fault_type}" not in self.handled]
            for finding in new:
                self.tools.submit(finding.service, finding.fault_type, finding.why)
                self.handled.add(f"{finding.service}/{finding.fault_type}")
                result.findings.append((finding.service, finding.fault_type, finding.why))
                last_new = time.monotonic()
                try:
                    finding.action()
                    result.actions += 1
                except (PolicyDenied, ToolError) as exc:
                    result.escalations.append(f"{finding.service} / {finding.fault_type}: {exc}")
            if not self.handled and time.monotonic() - began >= self.quiet_after and self._settled_revisions():
                self.tools.submit("none", "none", f"nothing found in {self.quiet_after:.0f} s")
                result.quiet = True
                return result
            if self.handled and time.monotonic() - last_new >= 20 and self._healthy():
                return result
            time.sleep(self.poll)
        return result

    def _settled_revisions(self) -> bool:
        """Whether every Deployment's current revision is old enough to have shown any fault."""
        return all(
            _age(self.tools.rollout_history(d["name"])[-1]["created"]) >= QUIET_REVISION_AGE
            for d in self.tools.deployments()
        )

    def _healthy(self) -> bool:
        deployments = self.tools.deployments()
        settled = all(d["ready"] == d["replicas"] == d["updated"] and not d["unavailable"] for d in deployments)
        errors, slow = self._sli("error_ratio"), self._sli("slow_ratio")
        return settled and all(v < 0.02 for v in errors.values()) and all(v < 0.05 for v in slow.values())
