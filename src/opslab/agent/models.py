"""Model backends for agents: one interface, so an agent loop runs the same on any of them.

- ``OpenAIChat``: any OpenAI-compatible chat-completions endpoint with tool calls (llama.cpp
  server, vLLM, Ollama, or opslab's own transcript server), through the ``openai`` client;
- ``Replay``: a recorded transcript (JSON lines), replayed reply by reply; a conversation that
  departs from the recording stops with ``ReplayDiverged`` instead of getting a wrong answer;
- ``Recorder``: wraps any backend and writes what it answered as such a transcript.

A backend's ``complete(messages, tools)`` takes the conversation in chat-completions form and the
tools as JSON schemas, and answers a ``Reply``: text, tool calls, or both.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import openai

from opslab.agent.transcript import Transcript
from opslab.primitives.errors import ConfigError, OpslabError

Message = Mapping[str, Any]
"""One message of a conversation, in chat-completions form (role, content, tool_calls, tool_call_id)."""


class ModelError(OpslabError):
    """The model answered something an agent cannot use (no choice, arguments that are not JSON)."""


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Reply:
    content: str
    tool_calls: tuple[ToolCall, ...] = ()

    def message(self) -> dict[str, Any]:
        """The assistant message to append to the conversation (chat-completions form)."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
                for c in self.tool_calls
            ]
        return message

    @staticmethod
    def parse(message: Mapping[str, Any]) -> Reply:
        """A reply from an assistant message in chat-completions form (as the wire or a transcript has it)."""
        calls: list[ToolCall] = []
        for raw in message.get("tool_calls") or []:
            function = raw.get("function") or {}
            name = function.get("name")
            if not name:
                raise ModelError(f"the model called a tool without a name: {json.dumps(raw)[:200]}")
            try:
                arguments = json.loads(function.get("arguments") or "{}")
            except json.JSONDecodeError as exc:
                raise ModelError(f"the model's arguments for {name} are not JSON ({exc.msg})") from None
            if not isinstance(arguments, dict):
                raise ModelError(f"the model's arguments for {name} are not a JSON object")
            calls.append(ToolCall(id=str(raw.get("id") or f"call-{len(calls)}"), name=str(name), arguments=arguments))
        return Reply(content=str(message.get("content") or ""), tool_calls=tuple(calls))


class ChatModel(Protocol):
    name: str

    def complete(self, messages: Sequence[Message], tools: Sequence[Mapping[str, Any]]) -> Reply: ...


def read_key(path: Path) -> str:
    """An API key from a file only its owner can read (mode 0600 or stricter)."""
    if not path.is_file():
        raise ConfigError(f"the API key file {path} does not exist", fix="write the key into it, mode 0600")
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"the API key file {path} is readable by others", fix=f"chmod 600 {path}")
    key = path.read_text().strip()
    if not key:
        raise ConfigError(f"the API key file {path} is empty", fix="write the key into it")
    return key


class OpenAIChat:
    """An OpenAI-compatible endpoint (``url`` ends in /v1), called with temperature 0."""

    def __init__(self, url: str, model: str, key_file: Path | None = None, timeout: float = 120) -> None:
        self.name = f"openai-compatible:{model}"
        self.model = model
        self.client = openai.OpenAI(
            base_url=url, api_key=read_key(key_file) if key_file else "unused", timeout=timeout, max_retries=1
        )

    def complete(self, messages: Sequence[Message], tools: Sequence[Mapping[str, Any]]) -> Reply:
        try:
            response = self.client.chat.completions.create(
                model=self.model,
                messages=[dict(m) for m in messages],  # type: ignore[misc]
                tools=[dict(t) for t in tools] if tools else openai.omit,  # type: ignore[misc]
                temperature=0,
            )
        except openai.APIError as exc:
            raise ModelError(f"the model endpoint refused the request: {exc}") from None
        if not response.choices:
            raise ModelError("the model endpoint answered without a choice")
        return Reply.parse(response.choices[0].message.model_dump(exclude_none=True))

    def close(self) -> None:
        self.client.close()


class Replay:
    """A recorded transcript answered back in order (see opslab.agent.transcript for what must match)."""

    def __init__(self, path: Path) -> None:
        self.name = f"replay:{path.name}"
        self.transcript = Transcript.load(path)

    def complete(self, messages: Sequence[Message], tools: Sequence[Mapping[str, Any]]) -> Reply:
        return Reply.parse(self.transcript.answer(messages, tools))


class Recorder:
    """Any backend, with each exchange appended to ``path`` as a transcript line Replay can answer from."""

    def __init__(self, model: ChatModel, path: Path) -> None:
        self.name = f"recorded:{model.name}"
        self.model = model
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")

    def complete(self, messages: Sequence[Message], tools: Sequence[Mapping[str, Any]]) -> Reply:
        reply = self.model.complete(messages, tools)
        line = {"messages": [dict(m) for m in messages], "tools": sorted(_tool_names(tools)), "reply": reply.message()}
        with self.path.open("a") as out:
            out.write(json.dumps(line) + "\n")
        return reply


def _tool_names(tools: Sequence[Mapping[str, Any]]) -> list[str]:
    return [str((t.get("function") or {}).get("name", "")) for t in tools]
