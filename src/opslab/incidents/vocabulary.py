"""The fixed vocabulary a diagnosis is written in: the shop's services and these fault types.

A submission names one service and one fault type; the scorer compares them with the incident's
answer. The types describe what an on-call engineer can establish from the outside (alerts,
metrics, events, the workloads), not how the platform injected it.
"""

from __future__ import annotations

from opslab.shop.topology import SERVICES

FAULT_TYPES: dict[str, str] = {
    "bad-rollout": "a new release of the service fails (some of) its requests: errors started with a rollout",
    "crash-loop": "the service's new pods exit on start and restart in a back-off loop",
    "memory-leak": "the service's pods grow in memory until they are OOMKilled (exit 137) and restart",
    "failing-readiness": "the service's new pods run but never pass their readiness probe",
    "capacity-loss": "too few replicas for the load: requests queue, slow down and are shed",
    "cpu-throttling": "a CPU limit too low for the load: every request of the service slows down",
    "latency": "a new release of the service answers slowly (the latency started with a rollout)",
    "node-not-ready": "a node stopped reporting Ready; the pods on it are unavailable",
    "quota-exhausted": "the namespace's ResourceQuota leaves no room: the service's new pods are refused "
    "(FailedCreate: exceeded quota)",
    "none": "nothing is wrong: no fault was injected (submit this to close a quiet incident)",
}
"""Every fault type a diagnosis may name, with what it looks like."""

NODE_SERVICE = "node"
"""What a diagnosis names as the service for node-not-ready: the node, not a workload, is at fault."""


def services() -> tuple[str, ...]:
    """Every service a diagnosis may name: the shop's, "node" for a node fault, "none" for nothing."""
    return (*SERVICES, NODE_SERVICE, "none")


class InvalidDiagnosis(ValueError):
    """A submission outside the vocabulary; the message lists what is allowed."""


def check(service: str, fault_type: str) -> None:
    """Raise InvalidDiagnosis unless ``service`` and ``fault_type`` are in the vocabulary."""
    if service not in services():
        raise InvalidDiagnosis(f"unknown service {service!r}; use one of: {', '.join(services())}")
    if fault_type not in FAULT_TYPES:
        raise InvalidDiagnosis(f"unknown fault type {fault_type!r}; use one of: {', '.join(FAULT_TYPES)}")
    if (fault_type == "none") != (service == "none"):
        raise InvalidDiagnosis("`none` goes with `none`: submit --service none --fault-type none for a quiet incident")
