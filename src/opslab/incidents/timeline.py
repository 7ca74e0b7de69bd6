"""What happened during an incident, read back afterwards from the platform's own records.

SLIs and alerts come from Prometheus (its TSDB holds the whole incident, so nothing has to sample
while the responder works); the responder's actions come from the API server's audit log, which
records every write of the incident-responder ServiceAccount.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from opslab.incidents.scorer import Action, SliSample
from opslab.runtime.components.kube import INCIDENT_RESPONDER, TERRAFORM_RUNNER, audited_requests
from opslab.runtime.terraform import STATE_NAMESPACE as TERRAFORM_NAMESPACE

STEP = 5.0
WRITES = {"create", "update", "patch", "delete", "deletecollection"}
SLI = {"error_ratio": "shop:sli_error_ratio:rate25s", "slow_ratio": "shop:sli_slow_ratio:rate25s"}


@dataclass(frozen=True)
class AlertSpan:
    alertname: str
    labels: dict[str, str]
    first: float
    last: float


def _range(prometheus: str, query: str, start: float, end: float) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{prometheus}/api/v1/query_range",
        params={"query": query, "start": start, "end": end, "step": STEP},
        timeout=20,
    )
    response.raise_for_status()
    return list(response.json()["data"]["result"])


def sli_samples(prometheus: str, start: float, end: float) -> list[SliSample]:
    """Each shop service's error and slow ratios every STEP seconds (no requests counts as 0)."""
    values: dict[tuple[float, str], dict[str, float]] = {}
    for key, query in SLI.items():
        for series in _range(prometheus, query, start, end):
            service = series["metric"].get("service", "")
            for t, value in series["values"]:
                number = float(value)
                values.setdefault((float(t), service), {})[key] = 0.0 if math.isnan(number) else number
    return [
        SliSample(t, service, v.get("error_ratio", 0.0), v.get("slow_ratio", 0.0))
        for (t, service), v in sorted(values.items())
    ]


def alert_spans(prometheus: str, start: float, end: float) -> list[AlertSpan]:
    """Every alert that fired between start and end (Watchdog aside), first and last seen."""
    spans = []
    for series in _range(prometheus, 'ALERTS{alertstate="firing", alertname!="Watchdog"}', start, end):
        labels = {k: v for k, v in series["metric"].items() if k not in ("__name__", "alertstate")}
        times = [float(t) for t, _ in series["values"]]
        spans.append(AlertSpan(labels.get("alertname", ""), labels, min(times), max(times)))
    return sorted(spans, key=lambda s: s.first)


def first_alert(spans: list[AlertSpan], after: float) -> float | None:
    """When the first alert that was not already firing at ``after`` began."""
    fresh = [s.first for s in spans if s.first > after]
    return min(fresh, default=None)


def responder_actions(audit_log: Path, start: float, end: float) -> list[Action]:
    """The responder's successful writes between start and end, oldest first: their own, and those
    their terraform tools made through the terraform runner (apart from its state and lock)."""
    return [
        Action(r.time, r.verb, r.resource, r.namespace, r.name)
        for r in audited_requests(audit_log)
        if (r.user == INCIDENT_RESPONDER or (r.user == TERRAFORM_RUNNER and r.namespace != TERRAFORM_NAMESPACE))
        and r.verb in WRITES
        and r.code < 400
        and start <= r.time <= end
    ]
