"""Fulfilment's ledger: every payment capture, in named ledgers, bounded.

A capture is recorded with its order id, amount, time, idempotency key (if the request had one)
and a capture id. Captures without a key are always recorded, so an order captured twice shows up
twice: that is how a consumer that does things twice is caught. A key makes a capture idempotent
within its ledger: a repeat with the same key and the same order returns the first capture and
records nothing; a repeat with the same key and a different order is refused.

Ledgers are namespaces: each grading run writes and reads its own, so concurrent runs never see or
wipe each other's captures. Requests without a ledger use ``default``.

Everything here runs on the shop's event loop and never awaits, so each call is atomic: many
concurrent requests need no lock. The whole book holds at most ``max_entries`` captures (all
ledgers together; about 0.25 KB each, 0.47 KB with an idempotency key, measured); past that,
captures are refused (never silently forgotten) until a ledger is deleted.
"""

from __future__ import annotations

import bisect
import itertools
import re
import secrets
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from enum import Enum
from typing import Any

LEDGER_NAME = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,61}[a-z0-9])?")
"""A ledger's name: 1-63 characters, lower-case letters, digits, '.', '_' and '-' (a DNS label or a run id)."""
DEFAULT_LEDGER = "default"
MAX_ENTRIES = 200_000
"""Captures the book holds over all ledgers: 50-94 MB of memory at the cap (see docs/shop.md); a
grading run writes a few thousand and deletes its ledger afterwards."""
DUPLICATE_IDS_SHOWN = 1000
"""How many duplicated order ids a summary lists (the counts are always complete)."""


@dataclass(frozen=True, slots=True)
class Capture:
    """One recorded capture."""

    seq: int
    """Position in its ledger, from 1: page through a ledger with ``after=<seq>``."""
    prefix: str
    """Its ledger's capture-id prefix (shared: the id is built when asked for, to save memory)."""
    order_id: str
    amount_cents: int
    captured_at: float
    """Unix time in seconds; never decreases within a ledger."""
    idempotency_key: str | None

    @property
    def capture_id(self) -> str:
        return f"cap-{self.prefix}-{self.seq:07d}"

    def as_json(self, ledger: str) -> dict[str, Any]:
        return {
            "capture_id": self.capture_id,
            "ledger": ledger,
            "seq": self.seq,
            "order_id": self.order_id,
            "amount_cents": self.amount_cents,
            "captured_at": self.captured_at,
            "idempotency_key": self.idempotency_key,
        }


class Outcome(Enum):
    """What a capture request did to the ledger."""

    RECORDED = "recorded"
    REPLAYED = "replayed"
    """The idempotency key was used before for the same order: the first capture, nothing recorded."""
    KEY_REUSED = "key-reused"
    """The idempotency key was used before for a different order or amount: refused."""
    FULL = "full"
    """The book holds MAX_ENTRIES captures: refused."""


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    capture: Capture | None
    """The capture recorded, or the first one of the idempotency key; None when full."""
    duplicate: bool = False
    """Recorded for an order this ledger had already captured."""


class Ledger:
    """The captures of one ledger, with the indexes its queries and summary need."""

    def __init__(self, name: str, prefix: str) -> None:
        self.name = name
        self.prefix = prefix
        self.captures: list[Capture] = []
        self.first: dict[str, Capture] = {}
        """Order id -> its first capture."""
        self.repeats: dict[str, list[Capture]] = {}
        """Order id -> its captures after the first, for duplicated orders only (in order of duplication)."""
        self.keys: dict[str, tuple[Capture, Hashable]] = {}
        """Idempotency key -> the capture it recorded and the fingerprint of that request."""
        self.amount_cents = 0

    def __len__(self) -> int:
        return len(self.captures)

    def append(self, order_id: str, amount_cents: int, key: str | None, fingerprint: Hashable, now: float) -> Result:
        last = self.captures[-1].captured_at if self.captures else now
        capture = Capture(
            seq=len(self.captures) + 1,
            prefix=self.prefix,
            order_id=order_id,
            amount_cents=amount_cents,
            captured_at=max(now, last),
            idempotency_key=key,
        )
        self.captures.append(capture)
        self.amount_cents += amount_cents
        if key is not None:
            self.keys[key] = (capture, fingerprint)
        if order_id not in self.first:
            self.first[order_id] = capture
            return Result(Outcome.RECORDED, capture)
        self.repeats.setdefault(order_id, []).append(capture)
        return Result(Outcome.RECORDED, capture, duplicate=True)

    def of_order(self, order_id: str) -> list[Capture]:
        first = self.first.get(order_id)
        return [first, *self.repeats.get(order_id, ())] if first else []

    def select(self, *, order: str | None, since: float | None, after: int, limit: int) -> tuple[list[Capture], bool]:
        """Captures in order, filtered; and whether more matched than ``limit``."""
        if order is not None:
            matching = [c for c in self.of_order(order) if c.seq > after and (since is None or c.captured_at >= since)]
            return matching[:limit], len(matching) > limit
        start = after
        if since is not None:
            start = max(start, bisect.bisect_left(self.captures, since, key=lambda c: c.captured_at))
        page = self.captures[start : start + limit + 1]
        return page[:limit], len(page) > limit

    def summary(self) -> dict[str, Any]:
        shown = sorted(itertools.islice(self.repeats, DUPLICATE_IDS_SHOWN))
        return {
            "ledger": self.name,
            "captures": len(self.captures),
            "orders": len(self.first),
            "duplicated_orders": len(self.repeats),
            "duplicate_captures": len(self.captures) - len(self.first),
            "amount_cents": self.amount_cents,
            "duplicated_order_ids": shown,
            "duplicated_order_ids_complete": len(shown) == len(self.repeats),
        }


class LedgerBook:
    """Every ledger, created by its first capture, and the cap on their total size."""

    def __init__(
        self,
        max_entries: int = MAX_ENTRIES,
        *,
        clock: Callable[[], float] = time.time,
        prefixes: Callable[[], str] = lambda: secrets.token_hex(4),
    ) -> None:
        self.max_entries = max_entries
        self.clock = clock
        self.prefixes = prefixes
        """A fresh prefix per ledger: capture ids stay unique when a ledger is deleted and written again."""
        self.ledgers: dict[str, Ledger] = {}
        self.entries = 0

    def find(self, name: str) -> Ledger | None:
        return self.ledgers.get(name)

    def capture(
        self, ledger: str, order_id: str, amount_cents: int, *, key: str | None, fingerprint: Hashable
    ) -> Result:
        """Record a capture in ``ledger``, unless its idempotency key was seen there or the book is full."""
        book = self.ledgers.get(ledger)
        if book is not None and key is not None and key in book.keys:
            first, first_fingerprint = book.keys[key]
            return Result(Outcome.REPLAYED if first_fingerprint == fingerprint else Outcome.KEY_REUSED, first)
        if self.entries >= self.max_entries:
            return Result(Outcome.FULL, None)
        if book is None:
            book = self.ledgers[ledger] = Ledger(ledger, self.prefixes())
        self.entries += 1
        return book.append(order_id, amount_cents, key, fingerprint, self.clock())

    def drop(self, name: str) -> int:
        """Delete a ledger; the number of captures it held (0 if there was none)."""
        book = self.ledgers.pop(name, None)
        if book is None:
            return 0
        self.entries -= len(book)
        return len(book)
