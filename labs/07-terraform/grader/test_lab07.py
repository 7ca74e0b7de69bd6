"""Lab 7 checks: the tenant module (its own tests, held-out inputs it must plan and refuse), the plan
policy (held-out plans, and whether the learner's tests notice a broken policy), and drift (the
alert rule under held-out series; drift.py against workspaces of the grader's, pushed to the
platform's Pushgateway)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families
from support import (
    HELDOUT,
    MODULE,
    Workspace,
    denials,
    load_plan_cases,
    policy_files,
    refusal_message,
    run_results,
    tool,
)  # fmt: skip

from opslab.grading.fixtures import LearnerError, env_or_fail, learner_file, python, run_learner
from opslab.grading.rubric import check
from opslab.grading.sandbox import Sandbox

# ---------------------------------------------------------------------- the module


@check(points=3, section="Module", timeout=240, hint="modules/tenant/tests/*.tftest.hcl: mock_provider "
       "blocks for kubernetes and kubectl, runs with command = plan that assert on names and labels, and runs with "
       "expect_failures for bad variables; `terraform test` in modules/tenant passes.")  # fmt: skip
def test_the_modules_own_tests_pass(lab_path: Path, scratch: Path, sandbox: Sandbox) -> None:
    """the module's own tests pass, with plan-level runs and refusals among them"""
    work = Workspace.copy(lab_path, scratch, sandbox, "own-tests")
    tests = sorted((work.root / MODULE / "tests").glob("*.tftest.hcl"))
    assert tests, "modules/tenant/tests/ has no *.tftest.hcl file"
    text = "\n".join(t.read_text() for t in tests)
    assert "mock_provider" in text, "the tests need no cluster: mock the kubernetes provider (mock_provider)"
    done = work.test(work.root / MODULE)
    results = run_results(done.stdout)
    failed = [name for name, verdict in results.items() if verdict != "pass"]
    assert done.returncode == 0 and not failed, f"`terraform test` fails: {failed or done.tail(6)}"
    assert len(results) >= 4, f"{len(results)} test runs; write at least 4 (good inputs and refusals)"
    assert text.count("expect_failures") >= 2, "at least two runs should prove bad variables are refused"


@check(points=4, section="Module", timeout=180, hint="Name the namespace <team>-<environment>; label it "
       "opslab.dev/team, opslab.dev/environment and opslab.dev/owner; take the quota, replicas, image and port "
       "from the variables; bind the deployer ServiceAccount to a Role without secrets or wildcards.")  # fmt: skip
def test_good_inputs_plan_the_tenant(lab_path: Path, scratch: Path, sandbox: Sandbox) -> None:
    """held-out good inputs plan the tenant the README describes (names, labels, quota, app, budget, RBAC, outputs)"""
    work = Workspace.copy(lab_path, scratch, sandbox, "good-inputs")
    shutil.copy(HELDOUT / "good.tftest.hcl", work.root / MODULE / "tests" / "zz_heldout_good.tftest.hcl")
    done = work.test(work.root / MODULE, "-filter=tests/zz_heldout_good.tftest.hcl")
    results = run_results(done.stdout)
    if results.get("heldout_good_inputs") == "pass":
        return
    failed = [line.strip() for line in (done.stdout + done.stderr).splitlines() if line.strip().startswith(
        ("Error:", "│ ", "on "))]  # fmt: skip
    raise AssertionError("held-out good inputs: " + (" ".join(failed)[:600] or done.tail(8)))


BAD = {
    "heldout_refuses_a_team_with_capitals": "team 'Ledger' (capitals)",
    "heldout_refuses_a_team_too_long": "a team name of 38 characters",
    "heldout_refuses_an_unknown_environment": "environment 'production'",
    "heldout_refuses_an_owner_that_is_not_an_address": "owner 'ledger team' (no address)",
    "heldout_refuses_a_latest_image": "an image tagged :latest",
    "heldout_refuses_an_image_without_a_tag": "an image without a tag",
    "heldout_refuses_zero_pods": "a quota of 0 pods",
    "heldout_refuses_a_budget_that_blocks_every_drain": "min_available equal to the replicas",
}
WRAPPER = """module "tenant" {{
  source      = "{module}"
  team        = "{team}"
  environment = "dev"
  owner       = "ledger-oncall@example.org"
  app         = {{ name = "books", image = "{image}" }}
}}
"""


@check(points=4, section="Module", timeout=240, hint="A validation block per variable, with an error_message "
       "that names the variable and says what a good value looks like; a lifecycle precondition for rules "
       "that span two variables (min_available against replicas).")  # fmt: skip
def test_bad_inputs_are_refused_with_a_clear_message(lab_path: Path, scratch: Path, sandbox: Sandbox) -> None:
    """held-out bad inputs are refused at plan time, each with a message that names what is wrong"""
    work = Workspace.copy(lab_path, scratch, sandbox, "bad-inputs")
    shutil.copy(HELDOUT / "bad.tftest.hcl", work.root / MODULE / "tests" / "zz_heldout_bad.tftest.hcl")
    done = work.test(work.root / MODULE, "-filter=tests/zz_heldout_bad.tftest.hcl")
    results = run_results(done.stdout)
    assert results.get("heldout_accepts_good_inputs") == "pass", (
        f"good inputs must plan before bad ones can be refused: {done.tail(6)}"
    )
    accepted = [what for name, what in BAD.items() if results.get(name) == "fail"]
    unrun = [what for name, what in BAD.items() if results.get(name) not in ("pass", "fail")]
    assert not accepted, f"your module does not refuse: {', '.join(accepted)}" + (
        f" (then `terraform test` skipped: {', '.join(unrun)})" if unrun else ""
    )
    assert not unrun, f"these held-out refusals did not run: {', '.join(unrun)}: {done.tail(4)}"
    root = work.root / "wrapper"
    for team, image, variable, word in (("Ledger", "books:1.0.0", "team", "team"),
                                        ("ledger", "books:latest", "app", "image")):  # fmt: skip
        root.mkdir(exist_ok=True)
        (root / "main.tf").write_text(WRAPPER.format(module=work.root / MODULE, team=team, image=image))
        work.init(root)
        planned = work.run(root, "plan", "-input=false", "-refresh=false")
        message = refusal_message(planned.stdout + planned.stderr, variable)
        assert planned.returncode != 0 and message, f"a plan with {variable} refused shows no message of yours"
        assert word in message.lower(), f"the message for a bad {word} should name it: {message!r}"


# ---------------------------------------------------------------------- the policy


@check(points=5, section="Policy", timeout=120, hint="deny a kubernetes_namespace change whose actions include "
       "delete when it is labelled prod (a replacement deletes too); require the three labels on every "
       "namespace written; every namespace the plan keeps needs a quota, not being deleted, in that "
       "namespace, with requests and limits of cpu and memory and pods.")  # fmt: skip
def test_the_policy_decides_held_out_plans(lab_path: Path, scratch: Path) -> None:
    """held-out plans are allowed or denied as the README's rules say"""
    rules, _ = policy_files(lab_path)
    assert rules, "policy/ has no Rego rules (files other than *_test.rego)"
    wrong = []
    for case in load_plan_cases():
        denied = denials(rules, case.plan, scratch)
        if (case.expect == "deny") != bool(denied):
            wrong.append(f"{case.name}: {'denied' if denied else 'allowed'}, should be {case.expect}")
    assert not wrong, f"{len(wrong)} held-out plans decided wrongly: " + "; ".join(wrong[:4])


GRADER_POLICY = Path(__file__).parent / "policy"
BROKEN = {
    "prod_deletes.rego": "a policy that lets a prod namespace be deleted",
    "owner.rego": "a policy that does not require the owner label",
    "quota.rego": "a policy that does not require a quota",
}


@check(points=3, section="Policy", timeout=120, hint="Test decisions, not wording: count(plan.deny) == 0 for a "
       "good plan, count(plan.deny) > 0 for each kind of bad one (a prod delete, a missing owner label, a "
       "missing or unbounded quota). Your tests must pass against a correct policy and fail against a "
       "policy missing any one rule.")  # fmt: skip
def test_the_policy_tests_catch_a_broken_policy(lab_path: Path, scratch: Path) -> None:
    """the learner's `opa test` tests pass on their policy and on a correct one, and fail on broken ones"""
    rules, tests = policy_files(lab_path)
    assert tests, "policy/ has no *_test.rego"
    own = subprocess.run([tool("opa"), "test", *map(str, rules + tests)], capture_output=True, text=True, timeout=60,
                         check=False)  # fmt: skip
    assert own.returncode == 0, f"`opa test policy` fails: {(own.stdout + own.stderr).strip()[-400:]}"
    correct = [GRADER_POLICY / "correct.rego"]

    def passes(policy: list[Path]) -> bool:
        done = subprocess.run([tool("opa"), "test", *map(str, policy + tests)], capture_output=True, text=True,
                              timeout=60, check=False)  # fmt: skip
        return done.returncode == 0

    assert passes(correct), "your tests fail against a correct policy: test decisions (count(deny)), not wording"
    blind = [what for name, what in BROKEN.items() if passes([GRADER_POLICY / "broken" / name])]
    assert not blind, f"your tests pass against {', '.join(blind)}: a test is missing"


# ---------------------------------------------------------------------- drift


@check(points=3, section="Drift", timeout=90, hint="TerraformDriftDetected: max by (workspace) of "
       "terraform_drift_detected == 1, for 1m, keeping the workspace label; it must not fire for a workspace in "
       "sync or for a single blip.")  # fmt: skip
def test_the_drift_alert_fires_per_workspace(lab_path: Path, scratch: Path) -> None:
    """TerraformDriftDetected fires for a drifted workspace (with its label) after a minute, and only then"""
    try:
        groups = yaml.safe_load(learner_file(lab_path, "alerts/drift.yml").read_text())["groups"]
        rules = [r for g in groups for r in g["rules"]]
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise AssertionError(f"alerts/drift.yml is not a Prometheus rule file ({exc})") from None
    alert = next((r for r in rules if r.get("alert") == "TerraformDriftDetected"), None)
    assert alert is not None, "alerts/drift.yml has no alert TerraformDriftDetected"
    assert (alert.get("annotations") or {}).get("summary"), "TerraformDriftDetected needs a summary annotation"
    for rule in rules:
        rule.pop("annotations", None)  # the held-out test checks labels and timing, not your wording
    stripped = scratch / "drift.yml"
    stripped.write_text(yaml.safe_dump({"groups": groups}))
    spec = yaml.safe_load((HELDOUT / "drift_test.yml").read_text())
    spec["rule_files"] = [str(stripped)]
    path = scratch / "drift_test.yml"
    path.write_text(yaml.safe_dump(spec))
    done = subprocess.run([tool("promtool"), "test", "rules", str(path)], capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip
    lines = [line.strip() for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode == 0, "the held-out alert test fails: " + " ".join(lines[-8:])[:600]


DRIFT_CONFIG = """terraform {
  required_providers {
    local = { source = "hashicorp/local", version = "~> 1.4" }
  }
}
variable "path" { type = string }
variable "content" { type = string }
resource "local_file" "marker" {
  filename = var.path
  content  = var.content
}
"""


def _pushed(url: str, workspaces: list[str]) -> dict[str, dict[str, float]]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    found: dict[str, dict[str, float]] = {w: {} for w in workspaces}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            workspace = sample.labels.get("workspace")
            if sample.labels.get("job") == "terraform-drift" and workspace in found:
                found[workspace][sample.name] = sample.value
    return found


@check(points=5, section="Drift", timeout=300, hint="python drift.py --envs DIR --workspace W ... --pushgateway URL "
       "--terraform BIN: per workspace a plan with -detailed-exitcode (exit 2 is drift, 1 is an error), pushed "
       "with job terraform-drift and grouping key workspace; a failed check pushes "
       "terraform_drift_check_success 0, never 'in sync'; exit 1 when a check failed, else 2 when any drifted.")  # fmt: skip
def test_drift_py_pushes_each_workspaces_drift(lab_path: Path, scratch: Path, sandbox: Sandbox, run_id: str) -> None:
    """drift.py finds the workspace changed outside Terraform, pushes drift per workspace, and never calls a failed check in sync"""
    url = env_or_fail("OPSLAB_PUSHGATEWAY_URL")
    work = Workspace.copy(lab_path, scratch, sandbox, "drift")
    envs = work.root / "grader-envs"
    envs.mkdir()
    (envs / "main.tf").write_text(DRIFT_CONFIG)
    synced, drifted, broken = (f"{run_id}-synced", f"{run_id}-drifted", f"{run_id}-broken")
    for workspace in (synced, drifted):
        (envs / f"{workspace}.tfvars").write_text(f'path = "{envs}/{workspace}.txt"\ncontent = "{workspace}"\n')
    (envs / f"{broken}.tfvars").write_text('path = "unterminated\n')  # a check that cannot run
    work.run(envs, "init", "-input=false")
    for workspace in (synced, drifted):
        applied = work.run(envs, "apply", "-input=false", "-auto-approve", f"-var-file={workspace}.tfvars",
                           TF_WORKSPACE=workspace)  # fmt: skip
        if applied.returncode != 0:
            raise LearnerError(f"the grader's workspace {workspace} did not apply: {applied.tail()}")
    (envs / f"{drifted}.txt").write_text("edited by hand\n")  # changed outside Terraform
    workspaces = [synced, drifted, broken]

    def drift(*names: str) -> tuple[int, dict[str, dict[str, float]], str]:
        args = [python(), str(learner_file(work.root, "drift.py")), "--envs", str(envs), "--pushgateway", url,
                "--terraform", work.binary, *(a for w in names for a in ("--workspace", w))]  # fmt: skip
        done = run_learner(args, cwd=scratch, timeout=120, env=work.env(), what="drift.py", sandbox=sandbox)
        return done.returncode, _pushed(url, workspaces), done.tail()

    try:
        code, pushed, tail = drift(synced, drifted)
        assert code == 2, f"drift.py exited {code} with one workspace drifted (want 2): {tail}"
        assert pushed[drifted].get("terraform_drift_detected") == 1, (
            f"nothing says workspace {drifted} drifted: pushed {pushed[drifted] or 'nothing'}"
        )
        assert pushed[synced].get("terraform_drift_detected") == 0, (
            f"workspace {synced} is in sync: terraform_drift_detected should be 0, pushed {pushed[synced] or 'nothing'}"
        )
        assert pushed[synced].get("terraform_drift_check_success") == 1, f"pushed for {synced}: {pushed[synced]}"
        code, pushed, tail = drift(synced, broken)
        assert code == 1, f"drift.py exited {code} when the check of one workspace could not run (want 1): {tail}"
        assert pushed[broken].get("terraform_drift_check_success") == 0, (
            f"the check of {broken} cannot run (bad variables): terraform_drift_check_success should be 0, "
            f"pushed {pushed[broken] or 'nothing'}"
        )
        assert pushed[broken].get("terraform_drift_detected") != 0, (
            f"a check that failed was reported in sync ({broken})"
        )
    finally:
        for workspace in workspaces:
            httpx.delete(f"{url}/metrics/job/terraform-drift/workspace/{workspace}", timeout=10)
