"""Recorded model transcripts: JSON lines, one exchange each, replayed in order.

A line is ``{"messages": [...], "tools": [names], "reply": {assistant message}}``: the conversation
the model was given, the tools it was offered and what it answered, in chat-completions form.
Replaying is exact about what the agent decided and tolerant of what the world answered: each
request must repeat the recorded conversation's roles, prompts and tool calls (names and
arguments) and offer the same tools, but the tools' results may differ (live metrics never repeat).
A request that departs from the recording raises ``ReplayDiverged`` naming the first difference;
one past the end raises ``ReplayExhausted``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opslab.primitives.errors import ConfigError, OpslabError


class ReplayDiverged(OpslabError):
    """The agent asked something the recording never saw: a replay cannot answer it honestly."""


class ReplayExhausted(OpslabError):
    """The agent asked for more replies than the recording holds."""


def normalise(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """What replay compares of a conversation: roles, prompts and tool calls; not the tools' results."""
    out: list[dict[str, Any]] = []
    for m in messages:
        role = str(m.get("role", ""))
        if role == "tool":
            out.append({"role": role, "tool_call_id": str(m.get("tool_call_id", ""))})
        elif role == "assistant":
            calls = []
            for c in m.get("tool_calls") or []:
                function = c.get("function") or {}
                try:
                    arguments = json.loads(function.get("arguments") or "{}")
                except json.JSONDecodeError:
                    arguments = function.get("arguments")
                calls.append({"id": str(c.get("id", "")), "name": function.get("name"), "arguments": arguments})
            out.append({"role": role, "content": m.get("content") or "", "tool_calls": calls})
        else:
            out.append({"role": role, "content": m.get("content") or ""})
    return out


def _first_difference(given: list[dict[str, Any]], recorded: list[dict[str, Any]]) -> str:
    for index, (a, b) in enumerate(zip(given, recorded, strict=False)):
        if a != b:
            return f"message {index} ({a.get('role')}) differs from the recording's ({b.get('role')})"
    return f"the conversation has {len(given)} messages, the recording {len(recorded)}"


@dataclass
class Transcript:
    path: Path
    lines: list[dict[str, Any]]
    position: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @staticmethod
    def load(path: Path) -> Transcript:
        if not path.is_file():
            raise ConfigError(f"the transcript {path} does not exist", fix="record one with a Recorder first")
        lines = []
        for number, text in enumerate(path.read_text().splitlines(), start=1):
            if not text.strip():
                continue
            try:
                line = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path}:{number} is not JSON ({exc.msg})", fix="one exchange per line") from None
            if not isinstance(line, dict) or not isinstance(line.get("reply"), dict):
                raise ConfigError(f"{path}:{number} has no reply", fix='each line needs "messages" and "reply"')
            if not isinstance(line.get("messages"), list):
                raise ConfigError(f"{path}:{number} has no messages", fix='each line needs "messages" and "reply"')
            lines.append(line)
        if not lines:
            raise ConfigError(f"the transcript {path} is empty", fix="record one with a Recorder first")
        return Transcript(path=path, lines=lines)

    def answer(self, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """The recorded reply to this request, if it is the request that was recorded next."""
        with self.lock:
            if self.position >= len(self.lines):
                raise ReplayExhausted(f"{self.path.name} holds {len(self.lines)} replies; the agent asked for more")
            line = self.lines[self.position]
            step = self.position + 1
            given, recorded = normalise(messages), normalise(line["messages"])
            if given != recorded:
                raise ReplayDiverged(f"{self.path.name}, reply {step}: {_first_difference(given, recorded)}")
            offered = sorted(str((t.get("function") or {}).get("name", "")) for t in tools)
            if "tools" in line and offered != sorted(line["tools"]):
                raise ReplayDiverged(
                    f"{self.path.name}, reply {step}: the agent offers the tools {offered}, "
                    f"the recording {sorted(line['tools'])}"
                )
            self.position += 1
            return dict(line["reply"])
