"""Remediation plans as data: what an agent means to do, checked before anything runs.

A plan names its diagnosis (in the incident vocabulary, with the evidence for it) and at most
``MAX_STEPS`` steps. Each step is one action tool with its arguments, what it is expected to do,
how to verify it (a PromQL query that must drop below a bound within a time) and how to undo it
(another action, or null when there is nothing to undo). A quiet incident's plan diagnoses
``none / none`` and has no steps.

``schema()`` is the JSON Schema (draft 2020-12), built from the vocabulary and the toolbox's
action tools, and shipped as ``platform/agent/plan.schema.json``; ``problems()`` checks a plan
against it and against what a schema cannot say (each step's arguments fit its tool; ``none``
goes with no steps; step ids are unique), one line per problem with its JSON path.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema

from opslab.agent.toolbox import ACTIONS
from opslab.incidents.vocabulary import FAULT_TYPES, services

MAX_STEPS = 5
"""A plan that needs more steps than this is not a remediation: escalate it to a human."""
SCHEMA_FILE = Path("platform/agent/plan.schema.json")
"""Where the schema is shipped, relative to the repository's root."""


def _action() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["tool", "arguments"],
        "additionalProperties": False,
        "properties": {
            "tool": {"enum": list(ACTIONS), "description": "an action tool of the toolbox"},
            "arguments": {"type": "object", "description": "the tool's arguments, as its function schema says"},
        },
    }


def schema() -> dict[str, Any]:
    """The plan's JSON Schema."""
    step = _action()
    step["required"] = ["id", "tool", "arguments", "expect", "verify", "rollback"]
    step["properties"] |= {
        "id": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,39}$", "description": "unique in the plan"},
        "expect": {"type": "string", "minLength": 5, "description": "what the step should change, in words"},
        "verify": {
            "type": "object",
            "required": ["promql", "below", "within_seconds"],
            "additionalProperties": False,
            "properties": {
                "promql": {"type": "string", "minLength": 1},
                "below": {"type": "number", "minimum": 0},
                "within_seconds": {"type": "number", "minimum": 10, "maximum": 600},
            },
            "description": "the step worked when every series of promql is below `below` within the time",
        },
        "rollback": {
            "oneOf": [{"type": "null"}, _action()],
            "description": "the action that undoes this step when verification fails; null if none",
        },
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://opslab.dev/schemas/remediation-plan.json",
        "title": "opslab remediation plan",
        "type": "object",
        "required": ["summary", "diagnosis", "steps"],
        "additionalProperties": False,
        "properties": {
            "summary": {"type": "string", "minLength": 5, "description": "one sentence for the human on call"},
            "diagnosis": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["service", "fault_type", "evidence"],
                    "additionalProperties": False,
                    "properties": {
                        "service": {"enum": list(services())},
                        "fault_type": {"enum": list(FAULT_TYPES)},
                        "evidence": {"type": "array", "items": {"type": "string", "minLength": 1}},
                    },
                },
            },
            "steps": {"type": "array", "maxItems": MAX_STEPS, "items": step},
        },
    }


def _path(error: jsonschema.ValidationError) -> str:
    return "plan" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)


def problems(plan: Any, tool_schemas: Sequence[Mapping[str, Any]] = ()) -> list[str]:
    """Everything wrong with ``plan``, one line each (empty: the plan is valid). With ``tool_schemas``
    (opslab.agent.functions.Functions.schemas()), each action's arguments are checked against its tool."""
    validator = jsonschema.Draft202012Validator(schema())
    found = [
        f"{_path(e)}: {e.message}" for e in sorted(validator.iter_errors(plan), key=lambda e: list(e.absolute_path))
    ]
    if found or not isinstance(plan, dict):
        return found
    steps = plan["steps"]
    quiet = any(d["service"] == "none" or d["fault_type"] == "none" for d in plan["diagnosis"])
    if quiet and steps:
        found.append("plan.steps: a plan that diagnoses none / none must not change anything")
    for d in plan["diagnosis"]:
        if (d["service"] == "none") != (d["fault_type"] == "none"):
            found.append("plan.diagnosis: `none` goes with `none` (service and fault type)")
        if d["fault_type"] != "none" and not d["evidence"]:
            found.append(f"plan.diagnosis: {d['service']} / {d['fault_type']} needs evidence")
    ids = [s["id"] for s in steps]
    found += [f"plan.steps: the id {i!r} is used twice" for i in sorted({i for i in ids if ids.count(i) > 1})]
    parameters = {str(t["function"]["name"]): t["function"].get("parameters", {}) for t in tool_schemas}
    for index, s in enumerate(steps):
        actions = [(f"plan.steps[{index}]", s)]
        if s["rollback"] is not None:
            actions.append((f"plan.steps[{index}].rollback", s["rollback"]))
        for where, action in actions:
            if action["tool"] in parameters:
                checker = jsonschema.Draft202012Validator(parameters[action["tool"]])
                found += [f"{where}.arguments: {e.message}" for e in checker.iter_errors(action["arguments"])]
    return found


def parse(text: str) -> dict[str, Any]:
    """A plan from a model's answer: the JSON object in it (a fenced ```json block or the whole text)."""
    body = text.strip()
    if "```" in body:
        parts = body.split("```")
        fenced = [p.removeprefix("json").strip() for p in parts[1::2]]
        body = next((p for p in fenced if p.startswith("{")), body)
    try:
        plan = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ValueError(f"the plan is not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(plan, dict):
        raise ValueError("the plan is not a JSON object")
    return plan


def write_schema(root: Path) -> Path:
    """Write the schema where it is shipped; return the path."""
    path = root / SCHEMA_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(schema(), indent=2) + "\n")
    return path


if __name__ == "__main__":  # python -m opslab.agent.plans: regenerate the shipped schema
    print(write_schema(Path(__file__).resolve().parents[3]))
