"""The shop's answers and the ASGI plumbing that sends them."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = tuple[tuple[bytes, bytes], ...]


@dataclass
class Response:
    status: int
    body: dict[str, Any] | list[Any]
    headers: Headers = ()
    note: str = ""
    """What the service log says about it ("" = the default "handled")."""
    fields: Mapping[str, object] | None = None
    """Extra fields for the service log line."""


def error(status: int, message: str, reason: str, *, retryable: bool, headers: Headers = ()) -> Response:
    """A JSON error: what is wrong, a reason from a fixed vocabulary, and whether trying again can help."""
    body = {"error": message, "reason": reason, "retryable": retryable}
    return Response(status, body, headers, note=message, fields={"reason": reason})


async def send_json(send: Send, response: Response) -> None:
    await send_bytes(send, response.status, json.dumps(response.body).encode(), b"application/json", response.headers)


async def send_bytes(send: Send, status: int, body: bytes, content_type: bytes, headers: Headers = ()) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})
