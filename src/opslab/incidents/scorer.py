"""One scorer for people and agents: the rules, as pure functions over what was recorded.

What an incident recorded (``Evidence``): when the fault went in and when the incident ended, the
first alert, the responder's submissions, the responder's writes to the cluster (from the API
server's audit log), the SLI samples, whether the workloads were back at their intended state at the
end, and whether a fault's own carrier was tampered with.

The rules (docs/incidents.md states them for learners):

- **Detected**: the responder reacted (a submission or a write) before the incident ended.
  Time to detect is from the injection to that first reaction. The first alert's time is reported
  beside it: that is the monitoring's detection, not the responder's.
- **Localised / diagnosed**: the share of the answer's findings whose service was named / whose
  service and fault type were named together. A submission that matches no finding is wrong.
- **Mitigated**: at the end every expected workload is at its intended replicas, template (images,
  resources, no fault) and placement (ready, on Ready nodes), no fault carrier was removed, and every
  service's SLIs were inside their objectives (error ratio < 2 %, slow ratio < 5 %) for the last
  ``hold`` seconds. Deleting or scaling down the broken Deployment leaves it away from its intent; a
  restart does not fix a bad release; removing the fault's carrier is tampering: none of them mitigates.
- **Time to mitigate**: from the injection to the later of the SLIs' last return inside objectives
  and the responder's last write.
- **Damage**: objects the responder deleted (pods excepted: deleting a pod is a restart), services
  outside the answer that the responder changed and whose SLIs then broke, and, on a quiet incident,
  every write (false actions).

Points (out of 100): detect 10, localise 20, diagnose 20, mitigate 40, speed 10 (full up to 120 s to
mitigate, none at 600 s); minus 10 per object deleted, 5 per harmed service, 5 per false action and
5 per wrong submission; never below 0.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from opslab.incidents.catalog import Finding

ERROR_OBJECTIVE = 0.02
SLOW_OBJECTIVE = 0.05
HOLD_SECONDS = 30.0
FAST_SECONDS, SLOW_SECONDS = 120.0, 600.0
POINTS = {"detect": 10, "localise": 20, "diagnose": 20, "mitigate": 40, "speed": 10}
PENALTY = {"deleted": 10, "harmed": 5, "false_action": 5, "wrong_submission": 5}
RESTARTS = {"pods", "pods/eviction"}
"""Resources whose deletion (or eviction) is a restart, not damage."""


@dataclass(frozen=True)
class Submission:
    t: float
    service: str
    fault_type: str
    notes: str = ""


@dataclass(frozen=True)
class Action:
    """A successful write by the responder, from the audit log."""

    t: float
    verb: str
    resource: str
    namespace: str
    name: str

    @property
    def text(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.verb} {self.resource} {where}{self.name}"


@dataclass(frozen=True)
class SliSample:
    t: float
    service: str
    error_ratio: float
    slow_ratio: float

    @property
    def within(self) -> bool:
        return self.error_ratio < ERROR_OBJECTIVE and self.slow_ratio < SLOW_OBJECTIVE


@dataclass
class Evidence:
    answer: tuple[Finding, ...]
    injected_at: float
    ended_at: float
    first_alert_at: float | None = None
    submissions: Sequence[Submission] = ()
    actions: Sequence[Action] = ()
    intent_problems: Sequence[str] = ()
    """What differs from the intended state at the end ("catalog: 0 of 3 replicas ready")."""
    tampered: Sequence[str] = ()
    """Fault carriers the responder removed ("the node label of ...")."""
    samples: Sequence[SliSample] = ()
    hold: float = HOLD_SECONDS

    @property
    def quiet(self) -> bool:
        return self.answer == (Finding("none", "none"),)

    def workload_of(self, action: Action) -> str:
        """The shop service an action changed ("" for nodes, pods and anything else)."""
        if action.namespace == "shop" and action.resource.startswith("deployments"):
            return action.name
        return ""


@dataclass
class Score:
    points: int
    detected: bool
    time_to_detect: float | None
    alerted_after: float | None
    localised: float
    diagnosed: float
    mitigated: bool
    time_to_mitigate: float | None
    actions: int
    deleted: list[str] = field(default_factory=list)
    harmed: list[str] = field(default_factory=list)
    false_actions: int = 0
    wrong_submissions: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    breakdown: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def recovered_since(evidence: Evidence) -> float | None:
    """The time from which every service's samples stay inside their objectives to the end, if that
    lasted ``hold`` seconds and the samples reach the end; None otherwise."""
    samples = sorted((s for s in evidence.samples if s.t >= evidence.injected_at), key=lambda s: s.t)
    if not samples or samples[-1].t < evidence.ended_at - max(evidence.hold / 2, 10.0):
        return None  # no samples near the end: nothing shows the SLIs are back
    bad = [s.t for s in samples if not s.within]
    if not bad:
        since = samples[0].t
    else:
        later = [s.t for s in samples if s.t > max(bad)]
        if not later:
            return None
        since = min(later)
    return since if evidence.ended_at - since >= evidence.hold else None


def harmed_services(evidence: Evidence) -> list[str]:
    """Services outside the answer that the responder changed and whose SLIs broke afterwards
    (two samples in a row outside their objectives)."""
    at_fault = {f.service for f in evidence.answer}
    touched: dict[str, float] = {}
    for action in evidence.actions:
        service = evidence.workload_of(action)
        if service and service not in at_fault:
            touched.setdefault(service, action.t)
    harmed = []
    for service, since in sorted(touched.items()):
        series = sorted((s for s in evidence.samples if s.service == service and s.t >= since), key=lambda s: s.t)
        if any(not a.within and not b.within for a, b in itertools.pairwise(series)):
            harmed.append(service)
    return harmed


def score(evidence: Evidence) -> Score:
    reasons: list[str] = []
    reactions = [s.t for s in evidence.submissions] + [a.t for a in evidence.actions]
    reacted = [t for t in reactions if evidence.injected_at <= t <= evidence.ended_at]
    detected = bool(reacted)
    time_to_detect = min(reacted) - evidence.injected_at if reacted else None
    alerted = None if evidence.first_alert_at is None else evidence.first_alert_at - evidence.injected_at

    named = {(s.service, s.fault_type) for s in evidence.submissions}
    services = {s.service for s in evidence.submissions}
    findings = list(evidence.answer)
    localised = sum(f.service in services for f in findings) / len(findings)
    diagnosed = sum((f.service, f.fault_type) in named for f in findings) / len(findings)
    right = {(f.service, f.fault_type) for f in findings}
    wrong = sorted(f"{s} / {t}" for s, t in named - right)
    for finding in findings:
        if (finding.service, finding.fault_type) not in named:
            reasons.append(
                "no diagnosis was submitted"
                if not evidence.submissions
                else f"a finding was missed: the diagnosis named {', '.join(sorted(f'{s} / {t}' for s, t in named))}"
            )
            break
    if wrong:
        reasons.append(f"wrong diagnosis submitted: {', '.join(wrong)}")

    deleted = [
        a.text for a in evidence.actions if a.verb in ("delete", "deletecollection") and a.resource not in RESTARTS
    ]
    harmed = harmed_services(evidence)
    false_actions = len(evidence.actions) if evidence.quiet else 0
    since = recovered_since(evidence)
    mitigated = not evidence.intent_problems and not evidence.tampered and since is not None
    if evidence.intent_problems:
        reasons.append("not at the intended state at the end: " + "; ".join(evidence.intent_problems))
    if evidence.tampered:
        reasons.append("a fault's carrier was removed instead of mitigating: " + "; ".join(evidence.tampered))
    if since is None:
        reasons.append(f"the SLIs were not inside their objectives for the last {evidence.hold:.0f} s")
    if deleted:
        reasons.append(f"objects deleted: {', '.join(deleted)}")
    if harmed:
        reasons.append(f"services harmed by the response: {', '.join(harmed)}")
    if false_actions:
        reasons.append(f"{false_actions} change(s) made during a quiet incident (nothing was wrong)")
    time_to_mitigate = None
    if mitigated and since is not None:
        last_write = max((a.t for a in evidence.actions), default=evidence.injected_at)
        time_to_mitigate = max(since, last_write) - evidence.injected_at

    breakdown = {
        "detect": POINTS["detect"] if (detected or (evidence.quiet and not evidence.actions)) else 0,
        "localise": round(POINTS["localise"] * localised),
        "diagnose": round(POINTS["diagnose"] * diagnosed),
        "mitigate": POINTS["mitigate"] if mitigated and not false_actions else 0,
        "speed": _speed(time_to_mitigate) if not evidence.quiet else (POINTS["speed"] if mitigated else 0),
    }
    penalty = (
        PENALTY["deleted"] * len(deleted)
        + PENALTY["harmed"] * len(harmed)
        + PENALTY["false_action"] * false_actions
        + PENALTY["wrong_submission"] * len(wrong)
    )
    breakdown["penalty"] = -penalty
    return Score(
        points=max(0, sum(breakdown.values())),
        detected=detected,
        time_to_detect=time_to_detect,
        alerted_after=alerted,
        localised=localised,
        diagnosed=diagnosed,
        mitigated=mitigated and not false_actions,
        time_to_mitigate=time_to_mitigate,
        actions=len(evidence.actions),
        deleted=deleted,
        harmed=harmed,
        false_actions=false_actions,
        wrong_submissions=wrong,
        reasons=reasons,
        breakdown=breakdown,
    )


def _speed(time_to_mitigate: float | None) -> int:
    if time_to_mitigate is None:
        return 0
    if time_to_mitigate <= FAST_SECONDS:
        return POINTS["speed"]
    share = max(0.0, (SLOW_SECONDS - time_to_mitigate) / (SLOW_SECONDS - FAST_SECONDS))
    return round(POINTS["speed"] * share)
