"""The deterministic model: no weights, rules that speak the tool-calling protocol.

It answers ``complete(messages, tools)`` like a chat model that calls tools, so an agent loop runs
for real, offline, with the same answer every time. It reads only the structured results of its
own tool calls, never the text of prompts, logs, events or annotations, so instructions planted
there cannot steer it. Three turns:

1. ask for the workloads, pods, nodes and the SLI and memory queries (parallel tool calls);
2. ask for each Deployment's rollout history;
3. answer a remediation plan (opslab.agent.plans) as a fenced JSON block, reasoned with
   opslab.agent.diagnosis; when nothing is wrong and every revision has settled, a plan that
   changes nothing (none / none); when a revision is too new to judge, ``WAIT:`` and why (look
   again later, in a new conversation); when something is wrong that it cannot explain or a tool
   failed, no plan but ``ESCALATE:`` and why.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from opslab.agent.diagnosis import (
    ERROR_OK,
    MEMORY_QUERY,
    SETTLING,
    SLI_QUERIES,
    SLOW_OK,
    Diagnosis,
    Evidence,
    bad_signals,
    diagnose,
    settled,
    sli,
)
from opslab.agent.models import Reply, ToolCall

FIRST: tuple[tuple[str, dict[str, Any]], ...] = (
    ("deployments", {}),
    ("pods", {}),
    ("nodes", {}),
    ("query", {"promql": SLI_QUERIES["errors"]}),
    ("query", {"promql": SLI_QUERIES["slow"]}),
    ("query", {"promql": MEMORY_QUERY}),
)
ESCALATE, WAIT = "ESCALATE:", "WAIT:"

_VERIFY: dict[str, tuple[str, float, float]] = {
    "bad-rollout": ('shop:sli_error_ratio:rate25s{{service="{s}"}}', ERROR_OK, 120),
    "latency": ('shop:sli_slow_ratio:rate25s{{service="{s}"}}', SLOW_OK, 120),
    "cpu-throttling": ('shop:sli_slow_ratio:rate25s{{service="{s}"}}', SLOW_OK, 120),
    "capacity-loss": ('shop:sli_error_ratio:rate25s{{service="{s}"}}', ERROR_OK, 120),
    "crash-loop": ('increase(shop_container_restarts{{service="{s}"}}[1m])', 1, 180),
    "memory-leak": ('increase(shop_container_restarts{{service="{s}"}}[1m])', 1, 180),
    "failing-readiness": ('shop_unready_replicas{{service="{s}"}}', 1, 120),
    "node-not-ready": ("max(shop:sli_error_ratio:rate25s)", ERROR_OK, 120),
}
"""How each fault's mitigation is verified: a PromQL query, the bound it must fall below, seconds."""


def _key(name: str, arguments: Mapping[str, Any]) -> str:
    return json.dumps([name, dict(arguments)], sort_keys=True)


def _results(messages: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The latest result of each tool call in the conversation, by (tool, arguments)."""
    calls: dict[str, str] = {}
    for m in messages:
        for c in m.get("tool_calls") or []:
            function = c.get("function") or {}
            try:
                arguments = json.loads(function.get("arguments") or "{}")
            except json.JSONDecodeError:
                continue
            calls[str(c.get("id", ""))] = _key(str(function.get("name", "")), arguments)
    results: dict[str, str] = {}
    for m in messages:
        if m.get("role") == "tool" and str(m.get("tool_call_id", "")) in calls:
            results[calls[str(m["tool_call_id"])]] = str(m.get("content") or "")
    return results


def _step_id(d: Diagnosis) -> str:
    target = str(d.arguments.get("service") or d.arguments.get("node") or d.service)
    return re.sub(r"[^a-z0-9-]+", "-", f"{d.tool.replace('_', '-')}-{target}".lower())[:40].strip("-")


def _rollback(d: Diagnosis, e: Evidence) -> dict[str, Any] | None:
    if d.tool == "rollout_undo":
        return {"tool": "rollout_undo", "arguments": {"service": d.arguments["service"]}}
    if d.tool == "scale":
        now = next((x["replicas"] for x in e.deployments if x["name"] == d.arguments["service"]), 0)
        return {"tool": "scale", "arguments": {"service": d.arguments["service"], "replicas": max(int(now), 1)}}
    if d.tool == "drain":
        return {"tool": "uncordon", "arguments": {"node": d.arguments["node"]}}
    return None


def plan_for(found: list[Diagnosis], e: Evidence) -> dict[str, Any]:
    """The remediation plan for ``found`` (a quiet plan when it is empty)."""
    if not found:
        return {
            "summary": "nothing is wrong: every SLI is inside its objective and every revision has settled",
            "diagnosis": [{"service": "none", "fault_type": "none", "evidence": ["no bad SLI", "no failing pod"]}],
            "steps": [],
        }
    steps = []
    for d in found:
        query, bound, within = _VERIFY[d.fault_type]
        steps.append(
            {
                "id": _step_id(d),
                "tool": d.tool,
                "arguments": d.arguments,
                "expect": f"{d.service} recovers from {d.fault_type}",
                "verify": {"promql": query.format(s=d.service), "below": bound, "within_seconds": within},
                "rollback": _rollback(d, e),
            }
        )
    return {
        "summary": "; ".join(f"{d.service}: {d.fault_type} ({d.why})" for d in found),
        "diagnosis": [{"service": d.service, "fault_type": d.fault_type, "evidence": [d.why]} for d in found],
        "steps": steps,
    }


class Deterministic:
    name = "deterministic"

    def __init__(self, clock: Any = time.time) -> None:
        self.clock = clock
        self._calls = 0

    def _call(self, name: str, arguments: dict[str, Any]) -> ToolCall:
        self._calls += 1
        return ToolCall(id=f"det-{self._calls}", name=name, arguments=arguments)

    def complete(self, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]]) -> Reply:
        offered = {str((t.get("function") or {}).get("name", "")) for t in tools}
        missing = {n for n, _ in FIRST} | {"rollout_history"}
        if not_offered := sorted(missing - offered):
            return Reply(f"{ESCALATE} I need the read tools {', '.join(not_offered)}, which are not offered")
        results = _results(messages)
        first = [(n, a) for n, a in FIRST if _key(n, a) not in results]
        if first:
            return Reply("", tuple(self._call(n, a) for n, a in first))
        failed = [k for k, v in results.items() if v.startswith("error")]
        if failed:
            return Reply(f"{ESCALATE} a read tool failed ({json.loads(failed[0])[0]}): {results[failed[0]][:200]}")
        deployments = json.loads(results[_key("deployments", {})])
        histories = [(d["name"], {"service": d["name"]}) for d in deployments]
        second = [("rollout_history", a) for _, a in histories if _key("rollout_history", a) not in results]
        if second:
            return Reply("", tuple(self._call(n, a) for n, a in second))
        evidence = Evidence(
            deployments=deployments,
            histories={name: json.loads(results[_key("rollout_history", a)]) for name, a in histories},
            pods=json.loads(results[_key("pods", {})]),
            nodes=json.loads(results[_key("nodes", {})]),
            errors=sli(json.loads(results[_key("query", {"promql": SLI_QUERIES["errors"]})])),
            slow=sli(json.loads(results[_key("query", {"promql": SLI_QUERIES["slow"]})])),
            memory=sli(json.loads(results[_key("query", {"promql": MEMORY_QUERY})]), label="pod"),
            now=self.clock(),
        )
        found = diagnose(evidence)
        if not found and bad_signals(evidence) and not settled(evidence, SETTLING):
            return Reply(f"{WAIT} SLIs are bad while a rollout is still settling: look again shortly")
        if not found and bad_signals(evidence):
            bad = ", ".join(f"{s} {sig}" for s, sig in sorted(bad_signals(evidence)))
            return Reply(f"{ESCALATE} bad SLIs ({bad}) with no recent change to undo: a human must look")
        if not found and not settled(evidence):
            return Reply(f"{WAIT} a revision is too new to judge yet: look again in a minute")
        return Reply("```json\n" + json.dumps(plan_for(found, evidence), indent=1) + "\n```")
