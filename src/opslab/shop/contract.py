"""The order event's contract: what checkout publishes to topic `orders` and fulfilment captures.

An order is a JSON object with
  order_id      "ord-" followed by 12 lower-case hex digits
  amount_cents  an integer >= 0: the sum of its items' prices (topology.PRICES) times quantities
  items         an object of known sku -> quantity (an integer from 1 to MAX_QUANTITY), at least one
and, from checkout, `user` and `ts` (not checked). Anything else is a Violation: a reason from a
fixed vocabulary (also a metric label) and a sentence saying what is wrong.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from opslab.shop.topology import PRICES, PRODUCTS

ORDER_ID = re.compile(r"ord-[0-9a-f]{12}")
REQUIRED = ("order_id", "amount_cents", "items")
MAX_QUANTITY = 1_000_000


class Reason(StrEnum):
    """Why an order breaks the contract."""

    NOT_JSON = "not-json"
    NOT_AN_OBJECT = "not-an-object"
    MISSING_FIELD = "missing-field"
    BAD_ORDER_ID = "bad-order-id"
    BAD_AMOUNT = "bad-amount"
    BAD_ITEMS = "bad-items"
    UNKNOWN_PRODUCT = "unknown-product"
    AMOUNT_MISMATCH = "amount-mismatch"


MALFORMED = {Reason.NOT_JSON, Reason.NOT_AN_OBJECT}
"""Reasons that are a syntax problem (HTTP 400); the others are well-formed but invalid (422)."""


@dataclass(frozen=True)
class Order:
    """An order that keeps the contract."""

    order_id: str
    amount_cents: int
    items: tuple[tuple[str, int], ...]
    """(sku, quantity), sorted by sku."""

    @property
    def fingerprint(self) -> tuple[str, int, tuple[tuple[str, int], ...]]:
        """What makes two capture requests the same capture (for idempotency keys)."""
        return (self.order_id, self.amount_cents, self.items)


@dataclass(frozen=True)
class Violation:
    """An order that breaks the contract."""

    reason: Reason
    message: str

    @property
    def status(self) -> int:
        return 400 if self.reason in MALFORMED else 422


def amount_of(items: Mapping[str, int]) -> int:
    """The price of ``items`` (known skus) in cents."""
    return sum(PRICES[sku] * quantity for sku, quantity in items.items())


def new_order(order_id: str, user: str, items: Mapping[str, int], ts: float) -> dict[str, Any]:
    """The order event checkout publishes."""
    return {"order_id": order_id, "user": user, "items": dict(items), "amount_cents": amount_of(items), "ts": ts}


def parse(raw: bytes | None) -> Order | Violation:
    """Check an order given as JSON text."""
    try:
        value = json.loads(raw or b"")
    except (ValueError, UnicodeDecodeError):
        return Violation(Reason.NOT_JSON, "the order is not JSON")
    return check(value)


def check(value: object) -> Order | Violation:
    """Check a decoded order against the contract; the first problem found is the one reported."""
    if not isinstance(value, dict):
        return Violation(Reason.NOT_AN_OBJECT, f"the order must be a JSON object, not {type(value).__name__}")
    missing = [name for name in REQUIRED if name not in value]
    if missing:
        return Violation(
            Reason.MISSING_FIELD, f"the order has no {', '.join(missing)} (it needs {', '.join(REQUIRED)})"
        )
    order_id, amount, items = value["order_id"], value["amount_cents"], value["items"]
    if not isinstance(order_id, str) or not ORDER_ID.fullmatch(order_id):
        return Violation(Reason.BAD_ORDER_ID, f"order_id {order_id!r} is not 'ord-' followed by 12 hex digits")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
        return Violation(Reason.BAD_AMOUNT, f"amount_cents {amount!r} is not a whole number of cents >= 0")
    problem = _items_problem(items)
    if problem is not None:
        return problem
    expected = amount_of(items)
    if amount != expected:
        return Violation(
            Reason.AMOUNT_MISMATCH, f"amount_cents {amount} does not match the items of {order_id} ({expected})"
        )
    return Order(order_id, amount, tuple(sorted(items.items())))


def _items_problem(items: object) -> Violation | None:
    if not isinstance(items, dict) or not items:
        return Violation(Reason.BAD_ITEMS, "items must be a non-empty object of sku -> quantity")
    for sku, quantity in items.items():
        if not isinstance(quantity, int) or isinstance(quantity, bool) or not 1 <= quantity <= MAX_QUANTITY:
            return Violation(Reason.BAD_ITEMS, f"the quantity of {sku} is {quantity!r}, not 1..{MAX_QUANTITY}")
        if sku not in PRICES:
            return Violation(
                Reason.UNKNOWN_PRODUCT, f"unknown product {sku!r}; the catalogue has {PRODUCTS[0]} .. {PRODUCTS[-1]}"
            )
    return None
