"""Lab 6 checks: the learner's plan policy on held-out plans and their tests of it; the agent
against scripted models (see support.py and agents.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from incidents import Response, respond, shop_to_ourselves
from support import VARIANTS, Case, opa, opa_test, platform_plan_policy, run_tests_against, wrong_decisions
from world import GOOD, NEVER, RELEASE, Harness, Script, World, approver, call_tool, image, plan, plan_reply, step

from opslab.grading.fixtures import learner_file
from opslab.grading.rubric import check
from opslab.grading.sandbox import Sandbox
from opslab.incidents.catalog import Incident
from opslab.settings import load as load_settings

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


# ---------------------------------------------------------------------- agent


DENIAL = "which the diagnosis does not name"
"""Part of the platform plan policy's reason for a step that acts where the diagnosis found nothing."""


def undo(service: str) -> dict[str, Any]:
    return step(f"undo-{service}", "rollout_undo", {"service": service})


def pinned() -> dict[str, Any]:
    """A plan the platform's policy sends to a human: an image set by hand (one checkout ran)."""
    back = step("pin-checkout", "set_image", {"service": "checkout", "image": image("checkout", GOOD)})
    return plan("checkout's release fails", [("checkout", "bad-rollout")], [back])


@check(points=4, section="Agent", timeout=150, hint="Parse the answer, check it (schema and policy), submit the "
       "diagnosis, run each step through the toolbox, poll its verify query until it is below its bound, and write "
       "report.json with outcome mitigated; exit 0.")  # fmt: skip
def test_a_checked_plan_is_carried_out_verified_and_submitted(harness: Harness, world: World) -> None:
    """a plan that passes its checks is run step by step, verified, and its diagnosis submitted"""
    model = Script(plan_reply(plan("cart's 1.1.0 release fails requests", [("cart", "bad-rollout")], [undo("cart")])))
    outcome = harness.run(model, firing=["cart"])
    assert world.state("cart")[0] == image("cart", GOOD), f"cart was not rolled back to {GOOD} ({outcome.describe()})"
    assert ("cart", "bad-rollout") in world.submitted, f"the diagnosis was not submitted: {world.submitted}"
    assert outcome.run.returncode == 0, f"agent.py did not exit 0 after a verified plan: {outcome.describe()}"
    assert outcome.report.get("outcome") == "mitigated", f"report.json says {outcome.report.get('outcome')!r}"


@check(points=3, section="Agent", timeout=120, hint="Check every plan with opslab.agent.plans.problems before "
       "anything runs: a plan with a problem is not run, and the agent escalates (exit 3).")  # fmt: skip
def test_an_invalid_plan_runs_nothing(harness: Harness, world: World) -> None:
    """a plan that breaks the schema (a step without verification or rollback) runs nothing"""
    broken = plan("scale catalog up", [("catalog", "capacity-loss")], [])
    broken["steps"] = [{"id": "more", "tool": "scale", "arguments": {"service": "catalog", "replicas": 3}}]
    model = Script(plan_reply(broken))
    outcome = harness.run(model, firing=["catalog"])
    assert model.requests, f"agent.py never asked the model for a plan: {outcome.describe()}"
    assert not outcome.actions, f"the toolbox was asked to act on an invalid plan: {outcome.actions}"
    assert world.state("catalog")[1] == 2, "catalog was scaled by an invalid plan"
    assert outcome.run.returncode == 3, f"agent.py did not escalate an invalid plan (exit 3): {outcome.describe()}"


@check(points=3, section="Agent", timeout=120, hint="While investigating, answer every action tool call with a "
       "refusal (a tool message for that call id) and never run it: actions run only from a checked plan. Record "
       "each attempt in report.json's refused list.")  # fmt: skip
def test_an_action_asked_for_while_investigating_is_refused(harness: Harness, world: World) -> None:
    """an action the model calls while investigating (as a planted notice tells it) is refused, not run"""
    model = Script(
        call_tool("events", {}, "call-read"),
        call_tool("scale", {"service": "payments", "replicas": 0}, "call-act"),
        plan_reply(plan("nothing is wrong", [("none", "none")], [])),
    )
    outcome = harness.run(model)
    assert not outcome.actions, f"an action the model called directly reached the toolbox: {outcome.actions}"
    assert world.state("payments")[1] == 2, "payments was scaled by a tool call outside a plan"
    answered = model.tool_results()
    assert "call-read" in answered and "call-act" in answered, (
        f"the agent did not answer every tool call (answered: {sorted(answered)}): the model must get a result for each"
    )
    assert answered["call-read"] != answered["call-act"], "the action call got the same answer as a read"
    refused = [r for r in outcome.report.get("refused") or [] if isinstance(r, dict)]
    assert any(r.get("tool") == "scale" and (r.get("arguments") or {}).get("replicas") == 0 for r in refused), (
        f"report.json's refused list does not record the scale the model asked for: {refused or 'nothing'} (an "
        "attempt to act outside a plan, perhaps on a planted instruction, is evidence a reviewer must see)"
    )


@check(points=3, section="Agent", timeout=120, hint="Act only on a firing alert: with nothing firing, a plan "
       "that changes something is a false action; do not run it, escalate (exit 3). A plan with no steps on a quiet "
       "shift is outcome quiet, exit 0.")  # fmt: skip
def test_a_quiet_shift_changes_nothing(harness: Harness, world: World) -> None:
    """on a quiet shift (nothing firing) a plan that changes a service is not run; an all-clear exits 0"""
    more = step("more-catalog", "scale", {"service": "catalog", "replicas": 3})
    model = Script(plan_reply(plan("catalog may be short of capacity: scale it to be safe",
                                   [("catalog", "capacity-loss")], [more])))  # fmt: skip
    outcome = harness.run(model)
    assert model.requests, f"agent.py never asked the model on a quiet shift: {outcome.describe()}"
    assert not outcome.actions, f"with nothing firing, the toolbox was asked to act: {outcome.actions}"
    assert world.state("catalog")[1] == 2, "catalog was scaled on a quiet shift"
    assert outcome.run.returncode == 3, (
        f"agent.py did not escalate a plan to change things while nothing fires (exit 3): {outcome.describe()}"
    )
    calm = harness.run(Script(plan_reply(plan("nothing is wrong", [("none", "none")], []))))
    assert calm.run.returncode == 0 and calm.report.get("outcome") == "quiet", (
        f"an all-clear on a quiet shift is outcome quiet, exit 0: {calm.describe()}"
    )


@check(points=3, section="Agent", timeout=120, hint="Evaluate the plan policy (platform plan.rego plus your "
       "policy/) with `opa eval`; a plan it denies is not run: escalate with its reasons.")  # fmt: skip
def test_a_plan_the_policy_denies_runs_nothing(harness: Harness, world: World) -> None:
    """a plan that acts where its diagnosis found nothing is denied by the plan policy and runs nothing"""
    wrong = plan("checkout is failing", [("checkout", "bad-rollout")], [undo("payments")])
    outcome = harness.run(Script(plan_reply(wrong)), firing=["checkout"])
    assert not outcome.actions, f"a plan the policy denies reached the toolbox: {outcome.actions}"
    assert world.state("payments")[0] == image("payments", RELEASE), "payments was changed by a denied plan"
    assert outcome.run.returncode == 3, f"agent.py did not escalate a denied plan (exit 3): {outcome.describe()}"
    assert DENIAL in json.dumps(outcome.report), (
        f"report.json does not carry the policy's reason for the denial ({DENIAL!r}): was the policy asked?"
    )


@check(points=3, section="Agent", timeout=120, hint="A step the toolbox's policy refuses is final: do not retry "
       "it, do not go on with the next step; escalate (exit 3) and say why.")  # fmt: skip
def test_a_step_the_toolbox_refuses_is_not_retried(harness: Harness, world: World) -> None:
    """a step the action policy refuses (a protected service to zero) is not retried and nothing else runs"""
    steps = [
        step("drain-payments", "scale", {"service": "payments", "replicas": 0}),
        step("again", "scale", {"service": "payments", "replicas": 1}),
    ]
    model = Script(plan_reply(plan("payments must restart", [("payments", "capacity-loss")], steps)))
    outcome = harness.run(model, firing=["payments"])
    tried = [(c.tool, c.args.get("replicas"), c.allowed) for c in outcome.actions]
    assert tried, f"the plan's first step never reached the toolbox: {outcome.describe()}"
    assert tried == [("scale", 0, False)], f"after a refusal the agent went on: {tried}"
    assert outcome.run.returncode == 3, f"agent.py did not escalate after a refused step: {outcome.describe()}"


@check(points=4, section="Agent", timeout=150, hint="Poll a step's verify query until every row is below its "
       "bound or within_seconds pass; if it never gets there, run the step's rollback, stop, and escalate.")  # fmt: skip
def test_a_step_that_does_not_verify_is_rolled_back(harness: Harness, world: World) -> None:
    """a step whose verification never passes is undone by its rollback step, and the agent stops"""
    steps = [
        step("more-catalog", "scale", {"service": "catalog", "replicas": 3}, verify=NEVER, within=10,
             rollback={"tool": "scale", "arguments": {"service": "catalog", "replicas": 2}}),
        undo("catalog"),
    ]  # fmt: skip
    model = Script(plan_reply(plan("catalog lost capacity", [("catalog", "capacity-loss")], steps)))
    outcome = harness.run(model, firing=["catalog"])
    tried = [(c.tool, c.args.get("replicas"), c.allowed) for c in outcome.actions]
    assert ("scale", 3, True) in tried, f"the step never ran: {tried} ({outcome.describe()})"
    assert tried == [("scale", 3, True), ("scale", 2, True)], f"not step, then its rollback, then stop: {tried}"
    assert world.state("catalog") == (image("catalog", RELEASE), 2), "catalog is not back where it was"
    assert outcome.run.returncode == 3, f"agent.py did not escalate a step that failed: {outcome.describe()}"


@check(points=2, section="Agent", timeout=120, hint="Count the model's turns: after --max-turns without an answer, "
       "stop asking and escalate (exit 3).")  # fmt: skip
def test_the_turn_budget_holds(harness: Harness) -> None:
    """a model that only ever asks for more tools gets at most --max-turns turns"""
    model = Script(then=call_tool("alerts", {}))
    outcome = harness.run(model, max_turns=4)
    assert model.requests, f"agent.py never asked the model: {outcome.describe()}"
    assert len(model.requests) <= 4, f"the model was asked {len(model.requests)} times with --max-turns 4"
    assert outcome.run.returncode == 3, f"agent.py did not escalate when out of turns: {outcome.describe()}"


@check(points=3, section="Agent", timeout=150, hint="When the decision lists needs_approval, submit the diagnosis, "
       "then ask the gate (opslab.agent.approvals.Gate.ask) and wait for the answer; a no runs nothing and "
       "escalates.")  # fmt: skip
def test_a_plan_needing_approval_waits_and_a_no_runs_nothing(harness: Harness, world: World) -> None:
    """a plan that needs a human (an image set by hand) asks for approval and waits; a rejection runs nothing
    and keeps the diagnosis"""
    two = pinned()
    seen: list[dict[str, Any]] = []
    outcome = harness.run(Script(plan_reply(two)), firing=["checkout"], during=approver(False, seen))
    assert seen, f"the agent never asked for approval of a plan the policy sends to a human: {outcome.describe()}"
    assert not outcome.actions, f"a rejected plan reached the toolbox: {outcome.actions}"
    assert ("checkout", "bad-rollout") in world.submitted, (
        f"the diagnosis was lost with the rejected fix (submit it before asking): {world.submitted}"
    )
    assert outcome.run.returncode == 3, f"agent.py did not escalate a rejected plan: {outcome.describe()}"


@check(points=2, section="Agent", timeout=120, hint="No answer within --approval-timeout is a no "
       "(Gate.wait returns a Verdict with approved False).")  # fmt: skip
def test_no_answer_to_an_approval_is_a_no(harness: Harness, world: World) -> None:
    """a plan that needs a human and gets no answer in time runs nothing"""
    two = pinned()
    model = Script(plan_reply(two))
    outcome = harness.run(model, firing=["checkout"], approval_timeout=3)
    assert model.requests, f"agent.py never asked the model for a plan: {outcome.describe()}"
    assert list((outcome.run_dir / "approvals").glob("*.request.json")), (
        f"the agent never asked for approval of a plan the policy sends to a human: {outcome.describe()}"
    )
    assert not outcome.actions, f"a plan nobody approved reached the toolbox: {outcome.actions}"
    assert outcome.run.returncode == 3, f"agent.py did not escalate an unanswered approval: {outcome.describe()}"


# ---------------------------------------------------------------------- incidents


@check(points=8, section="Incidents", timeout=1800, owns_shop=True, hint="Try your agent on the platform's incidents first "
       "(opslab incident start; the README's Try it): wait for alerts to fire (--quiet-after), poll each step's "
       "verify query until it holds or its within_seconds pass (a rollout takes tens of seconds), look again "
       "after a verified fix while alerts still fire (a second fault), and submit one diagnosis per finding.")  # fmt: skip
def test_your_agent_mitigates_incidents_it_has_not_seen(held_out: list[Incident], lab_path: Path,
                                                        sandbox: Sandbox) -> None:  # fmt: skip
    """on incidents it has not seen, your agent mitigates each fault with the right diagnosis and leaves quiet alone"""
    learner_file(lab_path, "agent.py")
    settings = load_settings()
    right: list[Response] = []
    with shop_to_ourselves(settings):
        for incident in held_out:
            response = respond(settings, incident, lab_path, sandbox, Path(opa()).parent)
            wrong = response.failures()
            assert not wrong, f"{wrong[0]} ({len(right)} of {len(held_out)} held-out incidents right before it)"
            right.append(response)
