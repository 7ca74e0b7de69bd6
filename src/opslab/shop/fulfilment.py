"""Fulfilment's HTTP API: capture the payment of an order, and read the ledger of captures.

    POST   /fulfilment/capture          capture an order; modelled like every hop (faults, capacity)
    GET    /fulfilment/ledger           the captures, oldest first (?order= ?since= ?after= ?limit=)
    GET    /fulfilment/ledger/summary   captures, distinct orders, duplicated orders and their ids
    DELETE /fulfilment/ledger           delete the ledger
    GET    /fulfilment/ledger/attempts  every capture request and its answer (?order= ?limit=)
    GET    /fulfilment/ledgers          every ledger and its size

Every route works on one ledger, named by the `X-Ledger` header or the `?ledger=` query
parameter (not both, unless equal), `default` when neither is given. The reading routes are the
auditor's view: they are not modelled, so faults never hide the ledger from a grader.

A capture answers 201 with the capture; with an `Idempotency-Key` already used in its ledger for
the same order it answers 200 with that first capture (header `Idempotent-Replayed: true`) and
records nothing. Refusals are permanent and say why: 400 (not JSON, a bad header), 422 (an order
that breaks the contract, a key reused for another order), 507 (the book is full). Faults and
capacity give 500 and 503 (with `Retry-After`); those are worth retrying.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from opslab.shop import contract
from opslab.shop.ledger import DEFAULT_LEDGER, LEDGER_NAME, Ledger, LedgerBook, Outcome, Result
from opslab.shop.model import Effects
from opslab.shop.responses import Response, Scope, error
from opslab.shop.telemetry import FulfilmentStats

SERVICE = "fulfilment"
IDEMPOTENCY_KEY = re.compile(r"[!-~]{1,255}")
"""1-255 visible ASCII characters."""
PAGE = 1000
MAX_PAGE = 10_000
MAX_ATTEMPTS = 200_000
"""Capture requests remembered over all ledgers (the oldest are forgotten first; about 0.2 KB each)."""
REPLAYED = ((b"idempotent-replayed", b"true"),)

Modelled = Callable[[str, str, Callable[[], Response], Effects, bool], Awaitable[Response]]
"""Runs a hop of ``service`` for ``route``: the model's latency and failures, then the work; the
last argument says whether it counts in the service's RED metrics."""


class Refusal(Exception):
    """A request fulfilment refuses for good (4xx or 507): retrying it unchanged cannot help."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message

    def response(self) -> Response:
        return error(self.status, self.message, self.reason, retryable=False)


@dataclass(frozen=True)
class Request:
    """What fulfilment reads of a request besides its body."""

    query: dict[str, str]
    ledger_header: str | None
    idempotency_key: str | None

    @classmethod
    def of(cls, scope: Scope) -> Request:
        ledger, key = None, None
        for name, value in scope.get("headers", ()):
            if name == b"x-ledger":
                ledger = value.decode("latin-1")
            elif name == b"idempotency-key":
                key = value.decode("latin-1")
        query = dict(urllib.parse.parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        return cls(query, ledger, key)

    @property
    def ledger_hint(self) -> str:
        """The ledger named, unchecked (for choosing the faults that apply)."""
        return self.ledger_header or self.query.get("ledger") or DEFAULT_LEDGER

    def ledger(self) -> str:
        """The ledger named by the header or the query, checked."""
        header, query = self.ledger_header, self.query.get("ledger")
        if header is not None and query is not None and header != query:
            raise Refusal(400, "bad-ledger", f"X-Ledger {header!r} and ?ledger={query} name different ledgers")
        name = header if header is not None else query if query is not None else DEFAULT_LEDGER
        if not LEDGER_NAME.fullmatch(name):
            raise Refusal(
                400,
                "bad-ledger",
                f"ledger {name!r} is not a ledger name: 1-63 of a-z, 0-9, '.', '_', '-', alphanumeric at both ends",
            )
        return name

    def key(self) -> str | None:
        key = self.idempotency_key
        if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
            raise Refusal(400, "bad-idempotency-key", "Idempotency-Key must be 1-255 visible ASCII characters")
        return key

    def number(self, name: str, kind: type[int] | type[float], low: float, high: float) -> float | None:
        raw = self.query.get(name)
        if raw is None:
            return None
        try:
            value = kind(raw)
        except ValueError:
            raise Refusal(400, "bad-query", f"?{name}={raw} is not a number") from None
        if not low <= value <= high:
            raise Refusal(400, "bad-query", f"?{name}={raw} is outside {low:g}..{high:g}")
        return value


@dataclass(frozen=True, slots=True)
class Attempt:
    """One capture request: when it came, for which order, and what it was answered."""

    ledger: str
    order_id: str
    at: float
    status: int
    seconds: float

    def as_json(self) -> dict[str, object]:
        return {"order_id": self.order_id, "at": self.at, "status": self.status, "seconds": round(self.seconds, 4)}


def order_id_of(body: bytes) -> str:
    """The order id a capture request names, if any (for the attempt log; never raises)."""
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ""
    order_id = value.get("order_id") if isinstance(value, dict) else None
    return order_id[:64] if isinstance(order_id, str) else ""


class Fulfilment:
    """The routes under /fulfilment/. ``modelled`` and ``effects`` come from the shop's model."""

    def __init__(
        self, book: LedgerBook, stats: FulfilmentStats, modelled: Modelled, effects: Callable[[str, str], Effects]
    ) -> None:
        self.book = book
        self.stats = stats
        self.modelled = modelled
        self.effects = effects
        self.attempts: deque[Attempt] = deque(maxlen=MAX_ATTEMPTS)
        """Every capture request, answered or not: how a consumer's retries and backoff look from here."""
        self.readers: dict[tuple[str, ...], Callable[[Request], Response]] = {
            ("GET", "ledger"): self.captures,
            ("GET", "ledger", "attempts"): self.attempts_of,
            ("GET", "ledger", "summary"): self.summary,
            ("DELETE", "ledger"): self.delete,
            ("GET", "ledgers"): self.ledgers,
        }
        """The routes that read or delete a ledger: not modelled, never faulted."""

    async def handle(self, method: str, route: list[str], scope: Scope, body: bytes) -> Response:
        request = Request.of(scope)
        if method == "POST" and route == ["capture"]:
            began, wall, order = time.monotonic(), time.time(), order_id_of(body)
            # Captures in other ledgers than the shop's own are graders' and learners' experiments:
            # they have their own counters and attempt log, and stay out of the shop's SLOs.
            answer = await self.modelled(
                SERVICE,
                "capture",
                lambda: self.capture(request, body),
                self.effects(request.ledger_hint, order),
                request.ledger_hint == DEFAULT_LEDGER,
            )
            self.attempts.append(Attempt(request.ledger_hint, order, wall, answer.status, time.monotonic() - began))
            return answer
        reader = self.readers.get((method, *route))
        if reader is None:
            return Response(404, {"error": f"no route {method} /fulfilment/{'/'.join(route)}"})
        try:
            return reader(request)
        except Refusal as refusal:
            return refusal.response()

    # ------------------------------------------------------------------ capture

    def capture(self, request: Request, body: bytes) -> Response:
        """Record one capture (runs without awaiting: atomic on the event loop)."""
        try:
            ledger, key = request.ledger(), request.key()
            order = contract.parse(body)
            if isinstance(order, contract.Violation):
                raise Refusal(order.status, order.reason.value, order.message)
            result = self._record(ledger, key, order)
        except Refusal as refusal:
            self.stats.reject(refusal.reason)
            return refusal.response()
        capture = result.capture
        assert capture is not None  # only FULL has none, and that is a Refusal
        fields = {"ledger": ledger, "order_id": order.order_id, "capture_id": capture.capture_id}
        if result.outcome is Outcome.REPLAYED:
            self.stats.replays += 1
            return Response(200, capture.as_json(ledger), REPLAYED, note="replayed", fields=fields)
        self.stats.captures += 1
        self.stats.duplicate_captures += result.duplicate
        self._count()
        note = "captured again: a duplicate" if result.duplicate else "captured"
        return Response(201, capture.as_json(ledger), note=note, fields=fields)

    def _record(self, ledger: str, key: str | None, order: contract.Order) -> Result:
        result = self.book.capture(ledger, order.order_id, order.amount_cents, key=key, fingerprint=order.fingerprint)
        if result.outcome is Outcome.KEY_REUSED:
            first = result.capture.order_id if result.capture else "?"
            raise Refusal(
                422,
                "idempotency-key-reused",
                f"Idempotency-Key {key!r} was used in ledger {ledger} for another capture (order {first}); "
                "a new capture needs a new key",
            )
        if result.outcome is Outcome.FULL:
            raise Refusal(
                507,
                "ledger-full",
                f"the ledgers hold {self.book.max_entries} captures, the most fulfilment keeps; "
                "delete the ledgers you no longer need (DELETE /fulfilment/ledger)",
            )
        return result

    # ------------------------------------------------------------------ the ledger

    def captures(self, request: Request) -> Response:
        ledger = request.ledger()
        since = request.number("since", float, 0, float("inf"))
        after = int(request.number("after", int, 0, 2**63) or 0)
        limit = int(request.number("limit", int, 1, MAX_PAGE) or PAGE)
        book = self.book.find(ledger) or Ledger(ledger, "")
        page, more = book.select(order=request.query.get("order"), since=since, after=after, limit=limit)
        return Response(
            200,
            {
                "ledger": ledger,
                "captures": [capture.as_json(ledger) for capture in page],
                "more": more,
                "next_after": page[-1].seq if more else None,
            },
        )

    def attempts_of(self, request: Request) -> Response:
        """The ledger's capture requests, oldest first, with their answers (including faults and refusals)."""
        ledger, order = request.ledger(), request.query.get("order")
        limit = int(request.number("limit", int, 1, MAX_ATTEMPTS) or MAX_PAGE)
        chosen = [a for a in self.attempts if a.ledger == ledger and (order is None or a.order_id == order)]
        return Response(200, {"ledger": ledger, "attempts": [a.as_json() for a in chosen[-limit:]]})

    def summary(self, request: Request) -> Response:
        ledger = request.ledger()
        return Response(200, (self.book.find(ledger) or Ledger(ledger, "")).summary())

    def delete(self, request: Request) -> Response:
        ledger = request.ledger()
        removed = self.book.drop(ledger)
        self._count()
        return Response(200, {"ledger": ledger, "deleted": removed})

    def ledgers(self, _request: Request) -> Response:
        ledgers = [{"ledger": name, "captures": len(book)} for name, book in sorted(self.book.ledgers.items())]
        return Response(200, {"entries": self.book.entries, "max_entries": self.book.max_entries, "ledgers": ledgers})

    def _count(self) -> None:
        self.stats.entries = self.book.entries
        self.stats.ledgers = len(self.book.ledgers)
