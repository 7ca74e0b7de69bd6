"""The incident catalog: one YAML file per incident in incidents/ (and in a held-out folder).

An incident file says what to break (``inject``), under which load, what the right diagnosis is
(``answer``) and what to tell the responder afterwards (``debrief``). Its name is neutral
(``inc-03``) and its title is revealed only after it ends, so choosing one does not give it away.

Instructors keep incidents the learners' copies lack in a held-out folder (``OPSLAB_INCIDENTS_HELDOUT``
or ``--catalog``), like held-out grader cases; they are listed and chosen like the shipped ones.
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from opslab.incidents import vocabulary
from opslab.shop import faults as faults_module
from opslab.shop.topology import SERVICES

HELDOUT_ENV = "OPSLAB_INCIDENTS_HELDOUT"
NAME = re.compile(r"[a-z0-9][a-z0-9-]{1,40}")
TEMPLATE_FAULTS = ("crash-loop", "memory-leak", "failing-readiness")
"""Faults a release can carry as a pod-template label (KWOK's stages act on it)."""
REQUEST_FAULTS = ("latency", "error-rate")
"""Faults a release can carry as a Fault object scoped to the release's image."""


class IncidentInvalid(ValueError):
    """An incident file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class Release:
    """A new revision of a Deployment: a new image tag, maybe a fault label, a CPU limit, a request fault."""

    service: str
    tag: str
    template_fault: str = ""
    cpu_limit: str = ""
    request_fault: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scale:
    service: str
    replicas: int


@dataclass(frozen=True)
class NodeDown:
    """A node stops reporting Ready: the one running the most shop pods (ties broken by the seed)."""


@dataclass(frozen=True)
class QuotaDrift:
    """The shop's Terraform-managed ResourceQuota is lowered by hand to leave no room, then the
    service's pods are rescheduled (deleted): its ReplicaSet cannot create them again."""

    service: str


Injection = Release | Scale | NodeDown | QuotaDrift
KINDS = "release:, scale:, node-not-ready:, quota-drift:"


@dataclass(frozen=True)
class Finding:
    """One part of the answer: the service at fault and the fault type."""

    service: str
    fault_type: str


@dataclass(frozen=True)
class Incident:
    name: str
    title: str
    difficulty: int
    rps: float
    injections: tuple[Injection, ...]
    answer: tuple[Finding, ...]
    debrief: str
    path: Path
    held_out: bool = False

    @property
    def quiet(self) -> bool:
        """A no-op incident: nothing is injected; the right response is to change nothing."""
        return not self.injections


def _fail(path: Path, message: str) -> IncidentInvalid:
    return IncidentInvalid(f"{path.name}: {message}")


def _service(path: Path, raw: Any, where: str) -> str:
    if raw not in SERVICES:
        raise _fail(path, f"{where}.service {raw!r} is not a shop service ({', '.join(SERVICES)})")
    return str(raw)


def _injection(path: Path, index: int, raw: Any) -> Injection:
    where = f"inject[{index}]"
    if not isinstance(raw, dict) or len(raw) != 1:
        raise _fail(path, f"{where} must be one of {KINDS}")
    ((kind, body),) = raw.items()
    body = body or {}
    if kind == "release":
        service = _service(path, body.get("service"), where)
        tag = str(body.get("tag", ""))
        if not re.fullmatch(r"[A-Za-z0-9._-]+", tag):
            raise _fail(path, f"{where}.tag {tag!r} is not an image tag")
        template_fault = str(body.get("fault", ""))
        if template_fault and template_fault not in TEMPLATE_FAULTS:
            raise _fail(path, f"{where}.fault {template_fault!r}: use one of {', '.join(TEMPLATE_FAULTS)}")
        request_fault = dict(body.get("request_fault") or {})
        if request_fault:
            if request_fault.get("type") not in REQUEST_FAULTS:
                raise _fail(path, f"{where}.request_fault.type: use one of {', '.join(REQUEST_FAULTS)}")
            try:
                faults_module.parse("check", {**request_fault, "target": service})
            except faults_module.InvalidFault as exc:
                raise _fail(path, f"{where}.request_fault: {exc}") from None
        return Release(service, tag, template_fault, str(body.get("cpu_limit", "")), request_fault)
    if kind == "scale":
        replicas = body.get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise _fail(path, f"{where}.replicas must be a whole number >= 0")
        return Scale(_service(path, body.get("service"), where), replicas)
    if kind == "node-not-ready":
        return NodeDown()
    if kind == "quota-drift":
        return QuotaDrift(_service(path, body.get("service"), where))
    raise _fail(path, f"{where}: unknown injection {kind!r} ({KINDS})")


def load_incident(path: Path, *, held_out: bool = False) -> Incident:
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise _fail(path, f"cannot read: {exc}".splitlines()[0]) from None
    if not isinstance(raw, dict):
        raise _fail(path, "must be a mapping with title, inject, answer and debrief")
    name = path.stem
    if not NAME.fullmatch(name):
        raise _fail(path, f"the file name {name!r} must be lower-case letters, digits and dashes")
    injections = tuple(_injection(path, i, item) for i, item in enumerate(raw.get("inject") or []))
    answer = []
    for i, item in enumerate(raw.get("answer") or []):
        finding = Finding(str((item or {}).get("service", "")), str((item or {}).get("fault_type", "")))
        try:
            vocabulary.check(finding.service, finding.fault_type)
        except vocabulary.InvalidDiagnosis as exc:
            raise _fail(path, f"answer[{i}]: {exc}") from None
        answer.append(finding)
    if not answer:
        raise _fail(path, "answer must name at least one finding (service none, fault_type none when quiet)")
    if not injections and answer != [Finding("none", "none")]:
        raise _fail(path, "an incident that injects nothing must answer service none, fault_type none")
    for key in ("title", "debrief"):
        if not str(raw.get(key, "")).strip():
            raise _fail(path, f"{key} is missing")
    rps = raw.get("rps", 20)
    if not isinstance(rps, int | float) or not 1 <= rps <= 200:
        raise _fail(path, "rps must be a number from 1 to 200")
    return Incident(
        name=name,
        title=str(raw["title"]).strip(),
        difficulty=int(raw.get("difficulty", 1)),
        rps=float(rps),
        injections=injections,
        answer=tuple(answer),
        debrief=str(raw["debrief"]).strip(),
        path=path,
        held_out=held_out,
    )


def folders(root: Path, extra: Path | None = None) -> list[tuple[Path, bool]]:
    """The catalog folders: the shipped one, then the held-out one (``extra`` or the environment's)."""
    found = [(root / "incidents", False)]
    held = extra or (Path(os.environ[HELDOUT_ENV]) if os.environ.get(HELDOUT_ENV) else None)
    if held is not None:
        if not held.is_dir():
            raise IncidentInvalid(f"held-out incident folder {held} does not exist (check {HELDOUT_ENV} or --catalog)")
        found.append((held, True))
    return found


def catalog(root: Path, extra: Path | None = None) -> list[Incident]:
    """Every incident, by name; a held-out incident replaces a shipped one of the same name."""
    incidents: dict[str, Incident] = {}
    for folder, held_out in folders(root, extra):
        for path in sorted(folder.glob("*.yaml")):
            incidents[path.stem] = load_incident(path, held_out=held_out)
    return [incidents[name] for name in sorted(incidents)]


def choose(incidents: list[Incident], name: str | None, seed: int) -> Incident:
    """The incident named, or one drawn with ``seed`` (the same seed draws the same incident)."""
    if name:
        for incident in incidents:
            if incident.name == name:
                return incident
        raise IncidentInvalid(
            f"no incident named {name!r}; `opslab incident list` shows them ({', '.join(i.name for i in incidents)})"
        )
    if not incidents:
        raise IncidentInvalid("the incident catalog is empty")
    return random.Random(seed).choice(incidents)
