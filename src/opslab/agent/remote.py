"""The toolbox over MCP for a program outside the platform (a learner's agent, the demo's).

``RemoteTools`` offers what ``opslab.agent.functions.Functions`` offers in-process (``names``,
``schemas()``, ``call()``), through the official MCP client and the run's bearer token: one MCP
session, kept open on an event loop of its own, so a synchronous agent loop can call it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from concurrent.futures import Future
from typing import Any

import httpx2
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from opslab.agent.functions import Result, ToolSet, result_of
from opslab.agent.models import ToolCall
from opslab.primitives.errors import OpslabError


class RemoteTools(ToolSet):
    def __init__(self, url: str, token: str, timeout: float = 30) -> None:
        self.url = url
        self._headers = {"Authorization": f"Bearer {token}"}
        self._timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._ready: Future[list[Any]] = Future()
        self._stop: asyncio.Event | None = None
        self._session: ClientSession | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="mcp-client", daemon=True)
        self._thread.start()
        self._main = asyncio.run_coroutine_threadsafe(self._hold(), self._loop)
        try:
            self._tools = self._ready.result(timeout + 5)
        except Exception as exc:
            self.close()
            why = str(exc).splitlines()[0] if str(exc) else repr(exc)
            raise OpslabError(
                f"the MCP server at {url} did not answer: {why}",
                fix="is the toolbox served there, and is the token the run's?",
            ) from None

    async def _hold(self) -> None:
        self._stop = asyncio.Event()
        try:
            async with (
                httpx2.AsyncClient(headers=self._headers, timeout=self._timeout) as http,
                streamable_http_client(self.url, http_client=http) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                self._session = session
                self._ready.set_result((await session.list_tools()).tools)
                await self._stop.wait()
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)
            if not isinstance(exc, Exception):
                raise

    def call(self, call: ToolCall) -> Result:
        assert self._session is not None
        future = asyncio.run_coroutine_threadsafe(self._session.call_tool(call.name, call.arguments), self._loop)
        return result_of(call, future.result(self._timeout + 5))

    def close(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        with contextlib.suppress(Exception):  # the session is going away either way
            self._main.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
