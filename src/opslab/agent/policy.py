"""Asking the policy server (OPA) whether an action may run. It fails closed: no answer, no action."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

DECISION_PATH = "/v1/data/opslab/agent/decision"


@dataclass(frozen=True)
class Decision:
    allow: bool
    reasons: tuple[str, ...]


class Policy:
    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(timeout=timeout)

    def decide(self, request: dict[str, Any]) -> Decision:
        try:
            response = self._http.post(self.url + DECISION_PATH, json={"input": request})
            response.raise_for_status()
            result = response.json().get("result")
        except (httpx.HTTPError, ValueError) as exc:
            return Decision(False, (f"the policy server at {self.url} did not answer ({type(exc).__name__}): denied",))
        if not isinstance(result, dict) or not isinstance(result.get("allow"), bool):
            return Decision(False, ("the policy has no opslab.agent.decision with allow and reasons: denied",))
        return Decision(bool(result["allow"]), tuple(str(r) for r in result.get("reasons") or ()))

    def close(self) -> None:
        self._http.close()
