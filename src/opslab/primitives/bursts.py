"""A bare HTTP/1.1 load client: kept-alive connections sending prepared requests, each timed.

Its own cost per request is a fraction of an HTTP library's (httpx costs about as much as a small
FastAPI handler), so on a 2-core machine the times measure the server, not the client. Used by
lab 5's grader and `make bench-automation`.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any


def post_request(path: str, body: dict[str, Any], headers: dict[str, str]) -> bytes:
    """An HTTP/1.1 POST as bytes, ready to write on a kept-alive connection."""
    data = json.dumps(body).encode()
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json",
             f"Content-Length: {len(data)}", *(f"{k}: {v}" for k, v in headers.items())]  # fmt: skip
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


async def _connection(port: int, requests: list[bytes], results: list[tuple[int, float]]) -> None:
    """One kept-alive connection sending requests one after another, timing each answer."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        results.append((0, float("inf")))
        return
    try:
        while requests:
            request = requests.pop()
            began = time.perf_counter()
            writer.write(request)
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in {b"\r\n", b""}:
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            await reader.readexactly(length)
            parts = status.split()
            results.append((int(parts[1]) if len(parts) > 1 else 0, time.perf_counter() - began))
    except (OSError, asyncio.IncompleteReadError, ValueError):
        results.append((0, float("inf")))
    finally:
        writer.close()


async def _burst(port: int, requests: list[bytes], clients: int, limit: float) -> list[tuple[int, float]]:
    results: list[tuple[int, float]] = []
    total = len(requests)
    try:
        await asyncio.wait_for(asyncio.gather(*(_connection(port, requests, results) for _ in range(clients))), limit)
    except TimeoutError:
        results += [(0, float("inf"))] * (total - len(results))  # unanswered when the limit struck
    return results


def burst(port: int, requests: list[bytes], clients: int, limit: float = 120) -> list[tuple[int, float]]:
    """Send every request from ``clients`` concurrent kept-alive connections; (status, seconds) each.

    A request that gets no answer (the connection was refused or closed, or ``limit`` seconds passed
    before the burst finished) counts as status 0 taking forever.
    """
    return asyncio.run(_burst(port, list(requests), clients, limit))
