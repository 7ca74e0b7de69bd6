"""Poison orders: order events that break the contract, as a buggy producer would publish them.

A share of the events checkout publishes to topic `orders` can be poisoned (the shop's
``poison_order_rate`` setting, or a `poison-orders` Fault). The customer still gets their order
back; the event on the topic is broken in one of the ways below, each of which fulfilment refuses
with a permanent 4xx. A consumer must set such an event aside (a dead-letter topic) and carry on,
neither crashing nor retrying it forever.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from opslab.shop.contract import REQUIRED, Reason


class PoisonKind(StrEnum):
    """How an event is broken; each maps to the contract's Reason in BREAKS."""

    NOT_JSON = "not-json"
    """The JSON text cut off half way."""
    MISSING_FIELD = "missing-field"
    """One of order_id, amount_cents, items left out."""
    BAD_ORDER_ID = "bad-order-id"
    """An order id in another system's format."""
    NEGATIVE_AMOUNT = "negative-amount"
    UNKNOWN_PRODUCT = "unknown-product"
    """An item no longer (or never) in the catalogue."""


BREAKS = {
    PoisonKind.NOT_JSON: Reason.NOT_JSON,
    PoisonKind.MISSING_FIELD: Reason.MISSING_FIELD,
    PoisonKind.BAD_ORDER_ID: Reason.BAD_ORDER_ID,
    PoisonKind.NEGATIVE_AMOUNT: Reason.BAD_AMOUNT,
    PoisonKind.UNKNOWN_PRODUCT: Reason.UNKNOWN_PRODUCT,
}
"""The contract violation each kind of poison is refused for."""
KINDS = tuple(PoisonKind)


def poisoned(order: Mapping[str, Any], kind: PoisonKind, rng: random.Random) -> bytes:
    """The event ``order`` broken in the way ``kind`` says."""
    event = dict(order)
    if kind is PoisonKind.NOT_JSON:
        text = json.dumps(event).encode()
        return text[: rng.randint(1, len(text) - 1)]
    if kind is PoisonKind.MISSING_FIELD:
        del event[rng.choice(REQUIRED)]
    elif kind is PoisonKind.BAD_ORDER_ID:
        event["order_id"] = f"ORDER-{rng.randint(10**8, 10**9 - 1)}"
    elif kind is PoisonKind.NEGATIVE_AMOUNT:
        event["amount_cents"] = -max(int(event["amount_cents"]), 1)
    else:
        event["items"] = {**event["items"], f"sku-{rng.randint(900, 999)}": 1}
    return json.dumps(event).encode()


def choose(rng: random.Random) -> PoisonKind:
    return rng.choice(KINDS)
