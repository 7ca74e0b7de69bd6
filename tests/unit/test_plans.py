"""Remediation plans: the schema shipped for learners is the one enforced, a good plan passes, and
each kind of bad plan is refused with a line that names where it is wrong."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from opslab.agent import plans
from opslab.agent.functions import Functions
from opslab.agent.toolbox import ACTIONS, Toolbox

ROOT = Path(__file__).resolve().parents[2]

GOOD: dict[str, Any] = {
    "summary": "gateway 1.1.0 fails half its requests since its rollout: roll it back",
    "diagnosis": [
        {
            "service": "gateway",
            "fault_type": "bad-rollout",
            "evidence": ["gateway error ratio 0.5 since revision 4 (image 1.1.0)", "its callees are clean"],
        }
    ],
    "steps": [
        {
            "id": "undo-gateway",
            "tool": "rollout_undo",
            "arguments": {"service": "gateway"},
            "expect": "the previous release serves again and errors stop",
            "verify": {
                "promql": 'shop:sli_error_ratio:rate25s{service="gateway"}',
                "below": 0.01,
                "within_seconds": 90,
            },
            "rollback": {"tool": "rollout_undo", "arguments": {"service": "gateway"}},
        }
    ],
}
QUIET = {"summary": "nothing is wrong: every SLI is inside its objective", "diagnosis": [
    {"service": "none", "fault_type": "none", "evidence": ["no alert fired", "no rollout in 10 minutes"]}
], "steps": []}  # fmt: skip


class AnyToolbox:
    """The functions' schemas need no cluster: nothing is called."""


def tool_schemas() -> list[dict[str, Any]]:
    return Functions(AnyToolbox()).schemas()


def test_the_shipped_schema_is_the_enforced_one() -> None:
    shipped = json.loads((ROOT / plans.SCHEMA_FILE).read_text())
    assert shipped == plans.schema(), "regenerate it: python -m opslab.agent.plans"


def test_the_action_tools_are_the_toolbox_s_and_the_policy_s() -> None:
    assert all(callable(getattr(Toolbox, a, None)) for a in ACTIONS)
    rego = (ROOT / "platform" / "policy" / "agent.rego").read_text()
    block = re.search(r"actions := \{(.*?)\}", rego, re.S)
    assert block is not None
    assert set(ACTIONS) <= set(re.findall(r'"([a-z_]+)"', block.group(1)))


@pytest.mark.parametrize("plan", [GOOD, QUIET], ids=["bad-rollout", "quiet"])
def test_a_good_plan_has_no_problems(plan: dict[str, Any]) -> None:
    assert plans.problems(plan, tool_schemas()) == []


def broken(change: str) -> dict[str, Any]:
    plan = copy.deepcopy(GOOD)
    step = plan["steps"][0]
    if change == "no-verify":
        del step["verify"]
    elif change == "kubectl":
        step["tool"] = "kubectl"
    elif change == "delete-namespace-rollback":
        step["rollback"] = {"tool": "delete_namespace", "arguments": {"name": "shop"}}
    elif change == "unknown-fault":
        plan["diagnosis"][0]["fault_type"] = "gremlins"
    elif change == "too-many-steps":
        plan["steps"] = [dict(step, id=f"s{i}") for i in range(plans.MAX_STEPS + 1)]
    elif change == "acts-when-quiet":
        plan["diagnosis"] = QUIET["diagnosis"]
    elif change == "same-id-twice":
        plan["steps"] = [step, copy.deepcopy(step)]
    elif change == "arguments-misfit":
        step["arguments"] = {"service": "gateway", "to_revision": "latest"}
    elif change == "rollback-misfit":
        step["rollback"] = {"tool": "scale", "arguments": {"service": "gateway"}}
    elif change == "instant-verify":
        step["verify"]["within_seconds"] = 0
    elif change == "extra-field":
        step["shell"] = "kubectl delete ns shop"
    elif change == "no-evidence":
        plan["diagnosis"][0]["evidence"] = []
    return plan


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ("no-verify", "plan.steps[0]: 'verify' is a required property"),
        ("kubectl", "plan.steps[0].tool: 'kubectl' is not one of"),
        ("delete-namespace-rollback", "plan.steps[0].rollback"),
        ("unknown-fault", "plan.diagnosis[0].fault_type: 'gremlins' is not one of"),
        ("too-many-steps", "plan.steps: "),
        ("acts-when-quiet", "must not change anything"),
        ("same-id-twice", "the id 'undo-gateway' is used twice"),
        ("arguments-misfit", "plan.steps[0].arguments: 'latest' is not of type 'integer'"),
        ("rollback-misfit", "plan.steps[0].rollback.arguments: 'replicas' is a required property"),
        ("instant-verify", "plan.steps[0].verify.within_seconds"),
        ("extra-field", "'shell' was unexpected"),
        ("no-evidence", "needs evidence"),
    ],
)
def test_a_bad_plan_is_refused_with_where_it_is_wrong(change: str, says: str) -> None:
    found = plans.problems(broken(change), tool_schemas())
    assert any(says in line for line in found), found
    assert all("\n" not in line for line in found)


def test_a_plan_is_read_from_a_fenced_answer() -> None:
    text = f"Here is my plan.\n```json\n{json.dumps(GOOD)}\n```\nI will verify each step."
    assert plans.parse(text) == GOOD
    assert plans.parse(json.dumps(QUIET)) == QUIET
    with pytest.raises(ValueError, match="not JSON"):
        plans.parse("roll back the gateway")
    with pytest.raises(ValueError, match="not a JSON object"):
        plans.parse("[1, 2]")
