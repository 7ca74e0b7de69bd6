"""The toolbox as chat-model functions: the MCP server's schemas, argument validation and errors
reach the model as readable tool results (a live toolbox is tested in tests/integration)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from opslab.agent.functions import Functions
from opslab.agent.models import ToolCall
from opslab.agent.toolbox import PolicyDenied


class Recording:
    """Stands in for the toolbox (which needs a cluster): records what the functions called."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def deployments(self) -> list[dict[str, Any]]:
        self.calls.append(("deployments", ()))
        return [{"name": "gateway", "replicas": 2, "intended": 2}]

    def rollout_undo(self, service: str, to_revision: int) -> dict[str, Any]:
        self.calls.append(("rollout_undo", (service, to_revision)))
        return {"rolled_back_to": 3}

    def scale(self, service: str, replicas: int) -> dict[str, Any]:
        raise PolicyDenied("scale", (f"{service} is protected: it may not be scaled to {replicas}",))


@pytest.fixture
def functions() -> tuple[Functions, Recording]:
    toolbox = Recording()
    return Functions(toolbox), toolbox


def test_every_tool_is_a_function_with_its_schema(functions: tuple[Functions, Recording]) -> None:
    f, _ = functions
    schemas = {s["function"]["name"]: s["function"] for s in f.schemas()}
    assert {"alerts", "query", "scale", "rollout_undo", "drain", "submit"} <= set(schemas)
    assert set(schemas) == set(f.names)
    scale = schemas["scale"]["parameters"]
    assert scale["type"] == "object" and set(scale["required"]) == {"service", "replicas"}
    assert scale["properties"]["replicas"]["type"] == "integer"
    assert "policy" in schemas["scale"]["description"]


def test_a_call_runs_the_tool_and_answers_json(functions: tuple[Functions, Recording]) -> None:
    f, toolbox = functions
    result = f.call(ToolCall("c1", "rollout_undo", {"service": "gateway"}))
    assert result.ok and json.loads(result.content) == {"rolled_back_to": 3}
    assert toolbox.calls == [("rollout_undo", ("gateway", 0))]
    listed = f.call(ToolCall("c2", "deployments", {}))
    assert json.loads(listed.content) == [{"name": "gateway", "replicas": 2, "intended": 2}]
    assert listed.message() == {"role": "tool", "tool_call_id": "c2", "content": listed.content}


@pytest.mark.parametrize(
    ("name", "arguments", "says"),
    [
        ("scale", {"service": "payments", "replicas": 0}, "scale denied by policy: payments is protected"),
        ("scale", {"service": "payments"}, "replicas Field required"),
        ("rollout_undo", {"service": "gateway", "to_revision": "latest"}, "to_revision"),
        ("delete_namespace", {"name": "shop"}, "Unknown tool: delete_namespace"),
    ],
)
def test_a_refused_or_malformed_call_is_an_error_the_model_reads(
    functions: tuple[Functions, Recording], name: str, arguments: dict[str, Any], says: str
) -> None:
    f, toolbox = functions
    result = f.call(ToolCall("c9", name, arguments))
    assert not result.ok and says in result.content, result.content
    assert "\n" not in result.content
    assert result.message()["content"].startswith("error: ")
    assert toolbox.calls == [], "a refused call reached the toolbox"
