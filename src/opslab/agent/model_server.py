"""An OpenAI-compatible chat-completions server that answers from a recorded transcript.

It lets an agent's OpenAI-compatible path (the ``openai`` client, real HTTP, tool calls) run
offline and exactly: ``POST /v1/chat/completions`` answers the transcript's next reply when the
request repeats the recorded conversation (opslab.agent.transcript), and an OpenAI-shaped error
(409) when it does not; ``GET /v1/models`` lists the one model. With a ``key``, each request must
carry ``Authorization: Bearer <key>``.
"""

from __future__ import annotations

import hmac
import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from opslab.agent.transcript import ReplayDiverged, ReplayExhausted, Transcript
from opslab.primitives.errors import OpslabError
from opslab.primitives.ports import free_port


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": kind}}, status_code=status)


def build(transcript: Transcript, model: str = "opslab-replay", key: str = "") -> Starlette:
    """The server's ASGI app (run it with uvicorn on 127.0.0.1)."""
    ids = itertools.count(1)

    def authorised(request: Request) -> bool:
        given = request.headers.get("authorization", "")
        return not key or hmac.compare_digest(given.encode(), f"Bearer {key}".encode())

    async def completions(request: Request) -> JSONResponse:
        if not authorised(request):
            return _error(401, "invalid_api_key", "a valid Authorization: Bearer <key> header is required")
        try:
            body: Any = await request.json()
        except ValueError:
            return _error(400, "invalid_request_error", "the body is not JSON")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "invalid_request_error", "the body needs a messages list")
        if body.get("stream"):
            return _error(400, "invalid_request_error", "streaming is not supported; send stream: false")
        try:
            reply = transcript.answer(body["messages"], body.get("tools") or [])
        except (ReplayDiverged, ReplayExhausted) as exc:
            kind = "replay_diverged" if isinstance(exc, ReplayDiverged) else "replay_exhausted"
            return _error(409, kind, str(exc))
        reply.setdefault("role", "assistant")
        return JSONResponse(
            {
                "id": f"chatcmpl-replay-{next(ids)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": str(body.get("model") or model),
                "choices": [
                    {
                        "index": 0,
                        "message": reply,
                        "finish_reason": "tool_calls" if reply.get("tool_calls") else "stop",
                    }
                ],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            }
        )

    async def models(request: Request) -> JSONResponse:
        if not authorised(request):
            return _error(401, "invalid_api_key", "a valid Authorization: Bearer <key> header is required")
        return JSONResponse({"object": "list", "data": [{"id": model, "object": "model", "owned_by": "opslab"}]})

    return Starlette(
        routes=[
            Route("/v1/chat/completions", completions, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
        ]
    )


@contextmanager
def served(app: Any, port: int = 0) -> Iterator[int]:
    """Serve an ASGI ``app`` on 127.0.0.1 (``port`` 0: a free one) in a thread while the block runs;
    yields the port once it listens, and stops the server after."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="asgi-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise OpslabError(f"could not listen on 127.0.0.1:{port}")
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def serving(transcript: Transcript, model: str = "opslab-replay", key: str = "", port: int = 0) -> Iterator[str]:
    """Serve ``transcript`` while the block runs; yields the base URL an OpenAI client takes
    (``http://127.0.0.1:PORT/v1``)."""
    with served(build(transcript, model, key), port) as bound:
        yield f"http://127.0.0.1:{bound}/v1"
