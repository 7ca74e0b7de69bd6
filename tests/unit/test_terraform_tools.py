"""What an agent reads of a Terraform plan: the attributes that change, and terraform's own error."""

from __future__ import annotations

from pathlib import Path

from opslab.agent.terraform_tools import ShownPlan, _changed, _error


def test_a_change_names_the_attributes_that_differ() -> None:
    change = {
        "address": 'kubernetes_resource_quota.platform["shop"]',
        "change": {
            "actions": ["update"],
            "before": {"id": "shop/opslab-quota", "spec": [{"hard": {"pods": "7"}}], "metadata": [{"name": "q"}]},
            "after": {"id": "shop/opslab-quota", "spec": [{"hard": {"pods": "200"}}], "metadata": [{"name": "q"}]},
        },
    }
    assert _changed(change) == ["spec"]
    created = {"change": {"actions": ["create"], "before": None, "after": {"metadata": [{}]}}}
    assert _changed(created) == ["metadata"]


def test_terraforms_error_line_is_what_the_agent_reads() -> None:
    output = (
        "Acquiring state lock. This may take a few moments...\n\n"
        "│ Error: Saved plan is stale\n│ \n│ The given plan file can no longer be applied because the state\n"
    )
    assert _error(output) == "Error: Saved plan is stale"
    assert _error("plan went wrong somehow\n") == "plan went wrong somehow"
    assert _error("") == "no output"


def test_a_plan_says_when_nothing_would_change() -> None:
    plan = ShownPlan("platform", "0123456789abcdef", Path("p.tfplan"), 0.0, [])
    assert plan.as_result()["summary"] == "no changes: matches the configuration"
    plan.changes.append({"address": "a", "actions": ["update"], "attributes": ["spec"]})
    assert plan.as_result() == {
        "config": "platform",
        "plan_digest": "0123456789abcdef",
        "changes": [{"address": "a", "actions": ["update"], "attributes": ["spec"]}],
        "summary": "1 to change",
    }
