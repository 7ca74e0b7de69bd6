"""Lab 6's policy checks: held-out plans decided by the platform's plan policy plus the learner's
rules, and the learner's `opa test` tests run against correct and broken policies of the grader's.

Everything here runs the real OPA binary (the platform's, from the toolchain); nothing needs the
cluster, so these checks run in parallel with any other grading.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from opslab.grading.fixtures import LearnerError
from opslab.settings import load as load_settings
from opslab.toolchain.resolve import toolchain_for

HELDOUT = Path(__file__).parent / "heldout"
POLICY_DIR = "policy"
SERVICES = ("gateway", "catalog", "cart", "checkout", "payments", "orders-worker", "fulfilment")

# Policies of the grader's own, written apart from the reference solution. A learner's tests must
# pass against the correct one (they test what the policy decides, not how their rules are named)
# and fail against each broken one (a test that cannot fail proves nothing).
HEADER = "package opslab.plan\n\n"
APPROVAL_RULE = """
needs_approval contains "grader: the plan changes more than one service" if {
	touched := {s.arguments.service | some s in input.plan.steps; s.arguments.service}
	count(touched) >= 2
}
"""
IMAGE_RULE = """
deny contains sprintf("grader: %v never ran %v", [s.arguments.service, s.arguments.image]) if {
	some s in input.plan.steps
	s.tool == "set_image"
	ran := [r.image | some r in object.get(input.histories, s.arguments.service, [])]
	not s.arguments.image in ran
}
"""
VARIANTS = {
    "correct": HEADER + APPROVAL_RULE + IMAGE_RULE,
    "without the approval rule": HEADER + IMAGE_RULE,
    "without the image rule": HEADER + APPROVAL_RULE,
}


def tool(name: str) -> str:
    """A program of the platform's toolchain (opa, alertmanager)."""
    return str(toolchain_for(load_settings()).require(name))


def opa() -> str:
    return tool("opa")


def platform_plan_policy() -> Path:
    return load_settings().paths.platform / "policy" / "plan.rego"


def learner_policy(lab_path: Path) -> tuple[list[Path], list[Path]]:
    """The learner's rule files and test files (``*_test.rego``) under policy/."""
    directory = lab_path / POLICY_DIR
    if not directory.is_dir():
        raise LearnerError(f"{POLICY_DIR}/ is missing from {lab_path}")
    files = sorted(directory.rglob("*.rego"))
    tests = [f for f in files if f.name.endswith("_test.rego")]
    rules = [f for f in files if f not in tests]
    if not rules:
        raise LearnerError(f"{POLICY_DIR}/ has no rules (a .rego file not ending in _test.rego)")
    return rules, tests


@dataclass(frozen=True)
class TestRun:
    """What `opa test --format=json` reported."""

    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    problem: str = ""
    """Set when opa could not run the tests at all (a parse or compile error)."""


def opa_test(paths: list[Path], timeout: float = 60) -> TestRun:
    result = subprocess.run(
        [opa(), "test", "--format=json", *map(str, paths)], check=False, capture_output=True, text=True, timeout=timeout
    )
    try:
        reported = json.loads(result.stdout or "[]")
    except ValueError:
        reported = None
    if not isinstance(reported, list):
        return TestRun(problem=(result.stderr or result.stdout).strip()[:400] or f"opa test exited {result.returncode}")
    passed, failed = [], []
    for test in reported:
        name = f"{test.get('package', '').removeprefix('data.')}.{test.get('name', '?')}"
        (failed if test.get("fail") or test.get("error") else passed).append(name)
    return TestRun(passed, failed)


def run_tests_against(variant: str, tests: list[Path]) -> TestRun:
    """The learner's tests run against one of the grader's policies (with the platform's)."""
    with tempfile.TemporaryDirectory(prefix="lab06-policy-") as work:
        directory = Path(work)
        (directory / "grader_variant.rego").write_text(VARIANTS[variant])
        for index, test in enumerate(tests):
            shutil.copy(test, directory / f"{index}_{test.name}")
        return opa_test([platform_plan_policy(), directory])


@dataclass(frozen=True)
class Case:
    """A held-out plan and the decision it must get."""

    name: str
    why: str
    document: dict[str, Any]
    allow: bool
    needs_approval: bool | None


def load_cases() -> list[Case]:
    return [case(item) for item in yaml.safe_load((HELDOUT / "plans.yaml").read_text())]


def case(item: dict[str, Any]) -> Case:
    steps = [
        {
            "id": f"s{index}",
            "tool": step["tool"],
            "arguments": step["arguments"],
            "expect": "the service recovers",
            "verify": {"promql": "vector(0)", "below": 1, "within_seconds": 60},
            "rollback": None,
        }
        for index, step in enumerate(item["steps"], 1)
    ]
    named = sorted({s["arguments"]["service"] for s in steps if "service" in s["arguments"]})
    diagnosis = item.get("diagnosis") or [{"service": s, "fault_type": "bad-rollout"} for s in named]
    plan = {
        "summary": f"held-out plan {item['name']}",
        "diagnosis": [{**d, "evidence": ["an alert fired"]} for d in diagnosis],
        "steps": steps,
    }
    document = {
        "plan": plan,
        "deployments": [{"name": s, "replicas": 2, "intended": 2, "image": f"opslab/shop-{s}:1.0.0"} for s in SERVICES],
        "histories": item.get("histories", {s: [{"image": f"opslab/shop-{s}:1.0.0"}] for s in named}),
    }
    expect = item["expect"]
    return Case(item["name"], item["why"], document, bool(expect["allow"]), expect.get("needs_approval"))


def decide(rules: list[Path], document: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
    """The combined decision (platform plan.rego plus the learner's rules) on one input."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as handle:
        json.dump(document, handle)
        handle.flush()
        command = [opa(), "eval", "--format=json", "--input", handle.name, "--data", str(platform_plan_policy())]
        for rule in rules:
            command += ["--data", str(rule)]
        result = subprocess.run([*command, "data.opslab.plan.decision"], check=False, capture_output=True, text=True,
                                timeout=timeout)  # fmt: skip
    if result.returncode != 0:
        raise LearnerError(f"opa eval of your policy failed: {(result.stderr or result.stdout).strip()[:300]}")
    try:
        return dict(json.loads(result.stdout)["result"][0]["expressions"][0]["value"])
    except (ValueError, KeyError, IndexError, TypeError):
        raise LearnerError("your policy leaves data.opslab.plan.decision undefined") from None


def wrong_decisions(rules: list[Path], cases: list[Case]) -> list[str]:
    """One line per held-out plan whose decision is not the expected one."""
    wrong = []
    for item in cases:
        decision = decide(rules, item.document)
        approval = bool(decision.get("needs_approval"))
        if bool(decision.get("allow")) != item.allow:
            verdict = "allowed" if decision.get("allow") else f"denied ({'; '.join(decision.get('deny', []))[:160]})"
            wrong.append(f"{item.name}: {verdict}, but {item.why}")
        elif item.needs_approval is not None and approval != item.needs_approval:
            said = "asks for approval" if approval else "asks for no approval"
            wrong.append(f"{item.name}: {said}, but {item.why}")
    return wrong
