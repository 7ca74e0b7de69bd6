"""The toolbox as functions a chat model calls: the MCP server's own tools, schemas and validation.

One definition of the tools serves every way an agent reaches them: the MCP server (opslab agent
mcp), and tool calling through a chat-completions model (opslab.agent.models). ``schemas()`` gives
the tools in the chat-completions ``tools`` form; ``call()`` runs one tool call in-process through
the same server, so arguments are validated against the same schema, and a policy denial, an
unknown tool or bad arguments come back as an error result the model can read, never an exception
that ends the agent.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from mcp.server.mcpserver.exceptions import ToolError as McpToolError

from opslab.agent import mcp_server
from opslab.agent.models import ToolCall


@dataclass(frozen=True)
class Result:
    call: ToolCall
    ok: bool
    content: str
    """The tool's result as JSON text, or the error's message."""

    def message(self) -> dict[str, Any]:
        """The tool message to append to the conversation."""
        text = self.content if self.ok else f"error: {self.content}"
        return {"role": "tool", "tool_call_id": self.call.id, "content": text}


class ToolSet:
    """What an agent loop needs of its tools: their names, their schemas, and ``call``."""

    _tools: list[Any]

    @property
    def names(self) -> list[str]:
        return [t.name for t in self._tools]

    def schemas(self) -> list[dict[str, Any]]:
        return schemas_of(self._tools)

    def call(self, call: ToolCall) -> Result:
        raise NotImplementedError


class Functions(ToolSet):
    def __init__(self, toolbox: Any) -> None:
        self.server = mcp_server.build(toolbox)
        self._tools = asyncio.run(self.server.list_tools())

    def call(self, call: ToolCall) -> Result:
        try:
            outcome = asyncio.run(self.server.call_tool(call.name, call.arguments))
        except McpToolError as exc:
            return Result(call, False, one_line(str(exc)))
        return result_of(call, outcome)


def schemas_of(tools: Any) -> list[dict[str, Any]]:
    """MCP tools (name, description, input schema) in the chat-completions ``tools`` form."""
    return [
        {
            "type": "function",
            "function": {"name": t.name, "description": t.description or "", "parameters": t.input_schema},
        }
        for t in tools
    ]


def result_of(call: ToolCall, outcome: Any) -> Result:
    """A tool call's MCP result (CallToolResult) as a Result: an error's first line, or the JSON."""
    structured = getattr(outcome, "structured_content", None)
    if getattr(outcome, "is_error", False):
        return Result(call, False, one_line(_text(outcome)))
    if isinstance(structured, dict) and set(structured) == {"result"}:
        return Result(call, True, json.dumps(structured["result"]))
    return Result(call, True, json.dumps(structured) if structured is not None else _text(outcome))


def _text(outcome: Any) -> str:
    return "\n".join(str(getattr(c, "text", "")) for c in getattr(outcome, "content", []) or [])


def one_line(message: str) -> str:
    """An error in one line, without the SDK's "Error executing tool X: " prefix (a validation
    error keeps the field and the complaint from its next lines)."""
    first = message.strip().splitlines()[0] if message.strip() else "the tool failed"
    if first.startswith("Error executing tool ") and ": " in first:
        first = first.split(": ", 1)[1]
    rest = [line.strip() for line in message.strip().splitlines()[1:3] if line.strip()]
    return " ".join([first, *rest]) if "validation error" in first else first
