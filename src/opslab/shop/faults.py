"""The Fault vocabulary: what can be injected, on what, and with which parameters.

A fault is declared as a `Fault` custom resource (faults.opslab.dev, namespace shop; the CRD is
platform/k8s/crds/fault.yaml). The shop simulator applies the ones that change request handling
(latency, error-rate, outage, hang, slow-consumer, poison-orders) itself; the fault controller
applies the others to the cluster or the platform (a pod-template label read by KWOK stages, a node
label, a stopped process, an out-of-band change) and reverts them when the Fault is deleted.

A request fault on fulfilment may name a ledger (spec.ledger): it then applies only to the captures
recorded in that ledger, so concurrent grading runs, each with a ledger of its own, can break
fulfilment for themselves without breaking it for each other.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from opslab.shop.ledger import LEDGER_NAME
from opslab.shop.model import Effects
from opslab.shop.topology import SERVICES

GROUP = "opslab.dev"
VERSION = "v1alpha1"
PLURAL = "faults"
FAULT_LABEL = "opslab.dev/build"
"""Label on a pod template (read by KWOK stages) or a node that switches a simulated fault on. Its
value is an opaque build id (CARRIER_CODES), not the fault's name: `kubectl get --show-labels` shows
an on-call engineer a build, not the answer (the mapping is here and in platform/kwok/stages)."""
CARRIER_CODES = {
    "memory-leak": "b7f3a",
    "crash-loop": "b2c91",
    "failing-readiness": "b5e08",
    "node-not-ready": "b9d46",
}
"""The label value that carries each fault the simulated kubelet acts out."""


def carrier(fault: str) -> str:
    """The label value that switches ``fault`` on."""
    return CARRIER_CODES[fault]


def carried(code: str) -> str:
    """The fault a label value switches on ("" for none or an unknown value)."""
    return next((fault for fault, value in CARRIER_CODES.items() if value == code), "")


SILENT_LABEL = "opslab.dev/incident"
"""Label on a Fault object an incident created: the shop announces no Event for it (the responder
reads Events, and the Fault is the answer)."""


class FaultType(Enum):
    LATENCY = "latency"
    ERROR_RATE = "error-rate"
    OUTAGE = "outage"
    MEMORY_LEAK = "memory-leak"
    CRASH_LOOP = "crash-loop"
    FAILING_READINESS = "failing-readiness"
    BAD_ROLLOUT = "bad-rollout"
    NODE_NOT_READY = "node-not-ready"
    KAFKA_DOWN = "kafka-down"
    REDIS_DOWN = "redis-down"
    SLOW_CONSUMER = "slow-consumer"
    TERRAFORM_DRIFT = "terraform-drift"
    HANG = "hang"
    POISON_ORDERS = "poison-orders"


REQUEST = {FaultType.LATENCY, FaultType.ERROR_RATE, FaultType.OUTAGE, FaultType.HANG}
"""Faults that change how the target answers a request (the model's Effects)."""
SIMULATED = REQUEST | {FaultType.SLOW_CONSUMER, FaultType.POISON_ORDERS}
"""Faults the simulator applies itself."""
POD_TEMPLATE = {FaultType.MEMORY_LEAK, FaultType.CRASH_LOOP, FaultType.FAILING_READINESS}
"""Faults applied as a pod-template label that KWOK stages act on."""
NEEDS_SERVICE = REQUEST | POD_TEMPLATE | {FaultType.BAD_ROLLOUT, FaultType.SLOW_CONSUMER}
POISON_TARGET = "checkout"
"""poison-orders breaks what checkout publishes; its target may be omitted."""
LEDGER_TARGET = "fulfilment"
"""The only service whose requests belong to a ledger (spec.ledger)."""
MAX_SCOPED_ORDERS = 1000
"""The most order ids one fault may name (spec.orders)."""

DESCRIPTIONS = {
    FaultType.LATENCY: "adds latencyMs to every request of the target service",
    FaultType.ERROR_RATE: "fails a share (errorRate, 0-1) of the target service's requests with 500",
    FaultType.OUTAGE: "the target service answers 503 to everything (a dependency outage)",
    FaultType.MEMORY_LEAK: "the target's containers leak memory until they are OOMKilled (exit 137), repeatedly",
    FaultType.CRASH_LOOP: "the target's containers exit with an error on start: CrashLoopBackOff",
    FaultType.FAILING_READINESS: "the target's pods run but fail their readiness probe",
    FaultType.BAD_ROLLOUT: "rolls the target out to a new image tag whose pods fail their requests",
    FaultType.NODE_NOT_READY: "the node (spec.node) reports NotReady; its pods are evicted",
    FaultType.KAFKA_DOWN: "stops the Kafka broker",
    FaultType.REDIS_DOWN: "stops Redis",
    FaultType.SLOW_CONSUMER: "orders-worker consumes at most messagesPerSecond: Kafka lag builds",
    FaultType.TERRAFORM_DRIFT: "changes a Terraform-managed object (the shop ResourceQuota) out of band",
    FaultType.HANG: "a share (hangRate) of the target's requests do their work, then hold the answer for hangMs",
    FaultType.POISON_ORDERS: "a share (poisonRate) of the order events checkout publishes to topic orders are broken",
}


class InvalidFault(ValueError):
    """A Fault spec that cannot be applied; the message names the field and what is allowed."""


@dataclass(frozen=True)
class Fault:
    """A validated fault."""

    name: str
    type: FaultType
    target: str = ""
    node: str = ""
    latency_ms: float = 0.0
    error_rate: float = 0.0
    messages_per_second: float = 0.0
    image_tag: str = ""
    hang_rate: float = 0.0
    hang_ms: float = 0.0
    poison_rate: float = 0.0
    ledger: str = ""
    """Only for request faults on fulfilment: the ledger whose captures it affects ("" = all)."""
    orders: frozenset[str] = frozenset()
    """Only for request faults on fulfilment: the order ids whose captures it affects (empty = all)."""
    image: str = ""
    """Only for request faults: the fault applies while some ready pod of the target runs this image
    ("" = always). A release that brings the fault: rolling the target back mitigates it."""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        where = self.target or self.node or "platform"
        return f"{self.type.value} on {where}"


def parse(name: str, spec: Mapping[str, Any]) -> Fault:
    """Validate a Fault spec (from a custom resource or a scenario file)."""
    raw_type = spec.get("type")
    try:
        kind = FaultType(raw_type)
    except ValueError:
        known = ", ".join(t.value for t in FaultType)
        raise InvalidFault(f"Fault {name}: unknown type {raw_type!r}; known types: {known}") from None
    target = str(spec.get("target", ""))
    if kind is FaultType.POISON_ORDERS:
        if target not in ("", POISON_TARGET):
            raise InvalidFault(f"Fault {name}: poison-orders applies to {POISON_TARGET} only (spec.target)")
        target = POISON_TARGET
    if kind in NEEDS_SERVICE and target not in SERVICES:
        raise InvalidFault(
            f"Fault {name}: spec.target {target!r} is not a shop service; use one of {', '.join(SERVICES)}"
        )
    if kind is FaultType.SLOW_CONSUMER and target != "orders-worker":
        raise InvalidFault(f"Fault {name}: slow-consumer applies to orders-worker only (spec.target)")
    image_tag = str(spec.get("imageTag", "2.0.0-bad"))
    if kind is FaultType.BAD_ROLLOUT and not image_tag.endswith("-bad"):
        raise InvalidFault(f"Fault {name}: spec.imageTag {image_tag!r} must end in -bad (those pods fail)")
    node = str(spec.get("node", ""))
    if kind is FaultType.NODE_NOT_READY and not node:
        raise InvalidFault(f"Fault {name}: node-not-ready needs spec.node (a node name)")
    ledger = _ledger(name, kind, target, spec)
    orders = _orders(name, kind, target, spec)
    image = _image(name, kind, spec)

    def number(key: str, low: float, high: float, default: float) -> float:
        value = spec.get(key, default)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InvalidFault(f"Fault {name}: spec.{key} = {value!r} is not a number") from None
        if not low <= number <= high:
            raise InvalidFault(f"Fault {name}: spec.{key} = {number} is outside {low}..{high}")
        return number

    return Fault(
        name=name,
        type=kind,
        target=target,
        node=node,
        latency_ms=number("latencyMs", 0, 60_000, 250 if kind is FaultType.LATENCY else 0),
        error_rate=number("errorRate", 0, 1, 0.5 if kind is FaultType.ERROR_RATE else 0),
        messages_per_second=number("messagesPerSecond", 0, 10_000, 2 if kind is FaultType.SLOW_CONSUMER else 0),
        image_tag=image_tag,
        hang_rate=number("hangRate", 0, 1, 0.2 if kind is FaultType.HANG else 0),
        hang_ms=number("hangMs", 1, 600_000, 30_000) if kind is FaultType.HANG else 0.0,
        poison_rate=number("poisonRate", 0, 1, 0.1 if kind is FaultType.POISON_ORDERS else 0),
        ledger=ledger,
        orders=orders,
        image=image,
    )


IMAGE_REFERENCE = re.compile(r"[^\s:]+:[A-Za-z0-9._-]+")


def _image(name: str, kind: FaultType, spec: Mapping[str, Any]) -> str:
    """spec.image, checked: an image reference (repository:tag), on a request fault."""
    image = spec.get("image", "")
    if not image:
        return ""
    if kind not in REQUEST:
        raise InvalidFault(
            f"Fault {name}: spec.image scopes a request fault ({', '.join(sorted(t.value for t in REQUEST))}) "
            f"to the pods running one image; remove it for {kind.value}"
        )
    if not isinstance(image, str) or not IMAGE_REFERENCE.fullmatch(image):
        raise InvalidFault(f"Fault {name}: spec.image {image!r} is not an image reference (repository:tag)")
    return image


def in_effect(faults: Iterable[Fault], ready_images: Mapping[str, set[str]]) -> tuple[Fault, ...]:
    """The faults that apply now: those scoped to an image only while a ready pod of their target runs it."""
    return tuple(f for f in faults if not f.image or f.image in ready_images.get(f.target, set()))


def _ledger(name: str, kind: FaultType, target: str, spec: Mapping[str, Any]) -> str:
    """spec.ledger, checked: a valid ledger name, on a request fault of fulfilment."""
    ledger = spec.get("ledger", "")
    if not ledger:
        return ""
    if kind not in REQUEST or target != LEDGER_TARGET:
        raise InvalidFault(
            f"Fault {name}: spec.ledger scopes a request fault ({', '.join(sorted(t.value for t in REQUEST))}) "
            f"on {LEDGER_TARGET} to one ledger; remove it or set spec.target to {LEDGER_TARGET}"
        )
    if not isinstance(ledger, str) or not LEDGER_NAME.fullmatch(ledger):
        raise InvalidFault(f"Fault {name}: spec.ledger {ledger!r} is not a ledger name ({LEDGER_NAME.pattern})")
    return ledger


def _orders(name: str, kind: FaultType, target: str, spec: Mapping[str, Any]) -> frozenset[str]:
    """spec.orders, checked: up to MAX_SCOPED_ORDERS order ids, on a request fault of fulfilment."""
    orders = spec.get("orders")
    if not orders:
        return frozenset()
    if kind not in REQUEST or target != LEDGER_TARGET:
        raise InvalidFault(
            f"Fault {name}: spec.orders scopes a request fault ({', '.join(sorted(t.value for t in REQUEST))}) "
            f"on {LEDGER_TARGET} to some orders; remove it or set spec.target to {LEDGER_TARGET}"
        )
    if (
        not isinstance(orders, list)
        or len(orders) > MAX_SCOPED_ORDERS
        or not all(isinstance(o, str) and 0 < len(o) <= 64 for o in orders)
    ):
        raise InvalidFault(f"Fault {name}: spec.orders must be a list of up to {MAX_SCOPED_ORDERS} order ids")
    return frozenset(orders)


def combine(first: float, second: float) -> float:
    """The share that fails when two independent shares (0-1) both apply."""
    return 1 - (1 - first) * (1 - second)


def effects_on(service: str, faults: Iterable[Fault], ledger: str = "", order: str = "") -> Effects:
    """The combined simulator effect of the active faults on one service (and, for fulfilment,
    on the captures of ``ledger`` and ``order``: faults scoped to other ledgers or orders do not apply)."""
    latency, error_rate, outage, hang_rate, hang_ms = 0.0, 0.0, False, 0.0, 0.0
    for fault in faults:
        if fault.target != service or (fault.ledger and fault.ledger != ledger):
            continue
        if fault.orders and order not in fault.orders:
            continue
        if fault.type is FaultType.LATENCY:
            latency += fault.latency_ms
        elif fault.type is FaultType.ERROR_RATE:
            error_rate = combine(error_rate, fault.error_rate)
        elif fault.type is FaultType.OUTAGE:
            outage = True
        elif fault.type is FaultType.HANG:
            hang_rate, hang_ms = combine(hang_rate, fault.hang_rate), max(hang_ms, fault.hang_ms)
    return Effects(latency_ms=latency, error_rate=error_rate, outage=outage, hang_rate=hang_rate, hang_ms=hang_ms)


def scoped_ledgers(faults: Iterable[Fault]) -> set[str]:
    """The ledgers some active fault is scoped to."""
    return {fault.ledger for fault in faults if fault.ledger}


def order_scoped(faults: Iterable[Fault]) -> tuple[Fault, ...]:
    """The active faults scoped to some orders (their effect depends on each capture's order)."""
    return tuple(fault for fault in faults if fault.orders)


def poison_rate(faults: Iterable[Fault]) -> float:
    """The share of order events the active poison-orders faults break."""
    rate = 0.0
    for fault in faults:
        if fault.type is FaultType.POISON_ORDERS:
            rate = combine(rate, fault.poison_rate)
    return rate
