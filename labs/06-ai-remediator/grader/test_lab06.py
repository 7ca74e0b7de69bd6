"""Lab 6 checks: the learner's plan policy on held-out plans and their tests of it; the agent
against scripted models (see support.py and agents.py)."""

from __future__ import annotations

from pathlib import Path

from support import VARIANTS, Case, opa_test, platform_plan_policy, run_tests_against, wrong_decisions

from opslab.grading.rubric import check

# ---------------------------------------------------------------------- policy


@check(points=2, section="Policy", timeout=60, hint="`opa test policy/ platform/policy/plan.rego` must pass, with "
       "tests for each rule that allow and that deny (or ask for approval): at least four.")  # fmt: skip
def test_your_policy_tests_pass(policy: tuple[list[Path], list[Path]]) -> None:
    """your opa tests pass with the platform's plan policy, and there are at least four"""
    rules, tests = policy
    assert tests, "policy/ has no tests (files ending in _test.rego)"
    run = opa_test([platform_plan_policy(), *rules, *tests])
    assert not run.problem, f"opa test could not run your policy: {run.problem}"
    assert not run.failed, f"your tests fail: {', '.join(run.failed[:4])}"
    assert len(run.passed) >= 4, f"{len(run.passed)} tests: test each rule both ways (at least four)"


@check(points=3, section="Policy", timeout=90, hint="Test what the policy decides (data.opslab.plan.deny, "
       "needs_approval, decision), not your helper rules or message wording: your tests are also run against a "
       "correct policy of ours, and must fail against ours with either rule left out.")  # fmt: skip
def test_your_policy_tests_catch_a_missing_rule(policy: tuple[list[Path], list[Path]]) -> None:
    """your tests pass against another correct policy and fail when either rule is left out"""
    _, tests = policy
    assert tests, "policy/ has no tests (files ending in _test.rego)"
    for variant in VARIANTS:
        run = run_tests_against(variant, tests)
        if variant == "correct":
            assert not run.problem, f"your tests do not run against a correct policy of ours: {run.problem}"
            assert not run.failed, (
                f"against a correct policy of ours, your tests fail ({', '.join(run.failed[:3])}): "
                "test the decision, not helper rules or wording"
            )
        else:
            assert run.problem or run.failed, f"your tests all pass against a policy {variant}: they cannot catch it"


@check(points=4, section="Policy", timeout=120, hint="More than one service changed needs approval (count the "
       "services the steps name, not the steps); set_image only to an image in that service's own history, whole "
       "reference with its tag; with no history, nothing was ever run.")  # fmt: skip
def test_held_out_plans_are_decided_right(policy: tuple[list[Path], list[Path]], heldout_plans: list[Case]) -> None:
    """your rules, with the platform's, decide held-out plans right: approval and denial, both ways"""
    rules, _ = policy
    wrong = wrong_decisions(rules, heldout_plans)
    assert not wrong, "; ".join(wrong[:3]) + (f" (and {len(wrong) - 3} more)" if len(wrong) > 3 else "")
