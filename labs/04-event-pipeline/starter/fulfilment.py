"""The shop's fulfilment API, for the lab's three consumers (given: you do not need to change it).

``capture(order)`` asks the shop to capture payment for one order and says how it went:
returns on success, raises ``Permanent`` when retrying cannot help (the API refused the order
with a 4xx), ``Transient`` when a later try may succeed (timeout, 5xx, 429, connection refused).

Pass ``idempotency_key`` and the API answers a repeat with the first capture instead of
capturing again (see the README: this is one of the two ways to make redelivery safe).
"""

from __future__ import annotations

import os
from typing import Any

import requests

URL = os.environ.get("FULFILMENT_URL", "http://127.0.0.1:18080")
LEDGER = os.environ.get("FULFILMENT_LEDGER", "")
"""The ledger captures are written to (the grader gives each run its own)."""


class Permanent(Exception):
    """Retrying cannot help: the order is invalid or the API refused it for good."""


class Transient(Exception):
    """Worth retrying later: a timeout, a 5xx, a 429, a refused connection."""


class Fulfilment:
    def __init__(self, url: str | None = None, ledger: str | None = None, timeout: float = 2.0) -> None:
        self.url = (url or URL).rstrip("/")
        self.ledger = LEDGER if ledger is None else ledger
        self.timeout = timeout
        self.http = requests.Session()  # keep-alive: one connection, not one per order

    def capture(self, order: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        if self.ledger:
            headers["X-Ledger"] = self.ledger
        try:
            answer = self.http.post(f"{self.url}/fulfilment/capture", json=order, headers=headers,
                                    timeout=self.timeout)  # fmt: skip
        except requests.RequestException as exc:
            raise Transient(f"{type(exc).__name__}: {exc}") from exc
        if answer.status_code < 300:
            return dict(answer.json())
        if answer.status_code in (408, 425, 429) or answer.status_code >= 500:
            raise Transient(f"HTTP {answer.status_code}")
        raise Permanent(f"HTTP {answer.status_code}: {answer.text[:200]}")
