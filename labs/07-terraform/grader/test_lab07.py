"""Lab 7 checks: the tenant module (its own tests, held-out inputs it must plan and refuse), the plan
policy (held-out plans, and whether the learner's tests notice a broken policy), and drift (the
alert rule under held-out series; drift.py against workspaces of the grader's, pushed to the
platform's Pushgateway)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from kubernetes import client
from kubernetes.client import ApiClient
from prometheus_client.parser import text_string_to_metric_families
from support import (
    HELDOUT,
    MODULE,
    Pipeline,
    Workspace,
    adoption_changes,
    denials,
    load_plan_cases,
    policy_files,
    private_pushgateway,
    refusal_message,
    run_results,
    terraform_children,
    tool,
)  # fmt: skip

from opslab.grading.fixtures import (
    LearnerError,
    env_or_fail,
    eventually,
    learner_file,
    python,
    run_learner,
    start_learner,
    stop_learner,
)
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


# ---------------------------------------------------------------------- the pipeline, on the platform


@pytest.fixture
def pipeline(
    request: pytest.FixtureRequest,
    lab_path: Path,
    scratch: Path,
    sandbox: Sandbox,
    kube_api: ApiClient,
    learner_kubeconfig: Path,
    run_id: str,
) -> Iterator[Pipeline]:
    """pipeline.sh on a copy of the learner's lab, as the run's confined identity, on a tenant of the check's own."""
    tag = request.node.name.rsplit("_", 1)[-1][:6]  # the check's last word: its tenant is <run>-<tag>
    work = Workspace.copy(lab_path, scratch, sandbox, f"pipeline-{tag}")
    learner_file(work.root, "pipeline.sh")
    made = Pipeline.create(work, kube_api, learner_kubeconfig, run_id, tag)
    try:
        yield made
    finally:
        made.close()


@check(points=5, section="Pipeline", timeout=300, hint="backend \"kubernetes\" with secret_suffix, init with "
       "-backend-config=namespace=$STATE_NAMESPACE and config_path=$KUBECONFIG; the workspace (TF_WORKSPACE or "
       "workspace select -or-create) names the state; the module's environment comes from var.environment.")  # fmt: skip
def test_pipeline_applies_each_workspace_in_isolation(pipeline: Pipeline) -> None:
    """dev and staging applied by pipeline.sh, each state in its own Secret; applying dev again leaves staging untouched"""
    pipeline.set_tenant("dev", replicas=2)
    pipeline.set_tenant("staging", replicas=3)
    pipeline.applied("dev")
    pipeline.applied("staging")
    for environment, replicas in (("dev", 2), ("staging", 3)):
        found = pipeline.replicas(environment)
        assert found == replicas, (
            f"after pipeline.sh {environment}, Deployment app in {pipeline.namespace(environment)} has "
            f"{found if found is not None else 'no'} replicas; the grader's {environment}.tfvars asks for {replicas}"
        )
    secrets = pipeline.state_secrets()
    for environment in ("dev", "staging"):
        assert any(name.startswith(f"tfstate-{environment}-") for name in secrets), (
            f"no state Secret of workspace {environment} in STATE_NAMESPACE ({pipeline.state}): found "
            f"{sorted(secrets) or 'none'}; keep state in the kubernetes backend, one workspace per environment"
        )
    staging = pipeline.versions(pipeline.namespace("staging"))
    staging_state = {k: v for k, v in secrets.items() if k.startswith("tfstate-staging-")}
    pipeline.set_tenant("dev", replicas=4)
    pipeline.applied("dev")
    assert pipeline.replicas("dev") == 4, "pipeline.sh dev did not apply dev's new replicas (4)"
    changed = sorted(k for k, v in pipeline.versions(pipeline.namespace("staging")).items() if staging.get(k) != v)
    assert not changed, f"applying dev changed staging's objects: {', '.join(changed)}"
    after = {k: v for k, v in pipeline.state_secrets().items() if k.startswith("tfstate-staging-")}
    assert after == staging_state, "applying dev rewrote staging's state Secret: each workspace has its own state"


@check(points=4, section="Pipeline", timeout=300, hint="./pipeline.sh W --plan writes envs/W.tfplan and stops; "
       "./pipeline.sh W --apply applies that file (terraform apply W.tfplan) and nothing else: no new plan, no "
       "-auto-approve with variables. Terraform refuses a stale saved plan itself; say so and exit non-zero.")  # fmt: skip
def test_pipeline_applies_only_the_saved_plan(pipeline: Pipeline) -> None:
    """--apply applies the plan that was reviewed, not what the variables say now, and refuses a stale plan"""
    pipeline.set_tenant("dev", replicas=2)
    pipeline.applied("dev", "--plan")
    plan = pipeline.work.root / "envs" / "dev.tfplan"
    assert plan.is_file(), "pipeline.sh dev --plan left no envs/dev.tfplan"
    assert pipeline.replicas("dev") is None, "pipeline.sh dev --plan applied something: it must stop after the policy"
    pipeline.set_tenant("dev", replicas=5)  # changed after the review: the saved plan says 2
    pipeline.applied("dev", "--apply")
    found = pipeline.replicas("dev")
    assert found == 2, (
        f"pipeline.sh dev --apply made {found if found is not None else 'no'} replicas: the saved plan (reviewed "
        "with 2) was not what was applied; apply the plan file, not the variables"
    )
    pipeline.set_tenant("dev", replicas=3)
    pipeline.applied("dev", "--plan")
    stale = plan.read_bytes()
    pipeline.set_tenant("dev", replicas=4)
    pipeline.applied("dev", "--plan")
    pipeline.applied("dev", "--apply")  # the state moves on: the plan for 3 is stale now
    before = pipeline.state_secrets()
    plan.write_bytes(stale)
    done = pipeline.run("dev", "--apply")
    assert done.returncode != 0, "pipeline.sh dev --apply applied a stale plan (made before the last apply)"
    assert "stale" in (done.stdout + done.stderr).lower() or "plan again" in (done.stdout + done.stderr).lower(), (
        f"pipeline.sh refused the stale plan but did not say so (mention 'stale', or 'plan again'): {done.tail()}"
    )
    assert pipeline.replicas("dev") == 4 and pipeline.state_secrets() == before, (
        "the refused stale plan changed the cluster or the state"
    )


@check(points=4, section="Pipeline", timeout=300, hint="plan and apply with -lock-timeout=$LOCK_TIMEOUT: they wait "
       "for the lock, then fail; catch 'Error acquiring the state lock' and say the state is locked and nothing "
       "was applied.")  # fmt: skip
def test_pipeline_waits_on_a_held_lock(pipeline: Pipeline) -> None:
    """with the state lock held, pipeline.sh waits LOCK_TIMEOUT then fails saying so, state intact; released in time, it goes on"""
    pipeline.set_tenant("dev", replicas=2)
    pipeline.applied("dev")
    lease = pipeline.hold_lock("dev")
    before = pipeline.state_secrets()
    pipeline.set_tenant("dev", replicas=3)
    done = pipeline.run("dev", lock_timeout="3s")
    assert done.returncode != 0, "pipeline.sh dev ran to the end while someone else held the state lock"
    assert "lock" in (done.stdout + done.stderr).lower(), (
        f"pipeline.sh failed but did not say the state is locked: {done.tail()}"
    )
    assert pipeline.replicas("dev") == 2 and pipeline.state_secrets() == before, (
        "pipeline.sh changed the cluster or the state while the lock was held"
    )
    # Held again with a long LOCK_TIMEOUT: released once a plan or apply has run 8 s (it tries the lock
    # within its first second or two, so one that does not wait has failed by then), the pipeline goes on.
    log = pipeline.work.root.parent / "pipeline-lock.log"
    proc = start_learner(pipeline.args("dev"), cwd=pipeline.work.root.parent, log=log, sandbox=pipeline.work.sandbox,
                         env=pipeline.env("120s"), what="pipeline.sh")  # fmt: skip
    try:
        waited = eventually(lambda: proc.poll() is not None or any(
            time.time() - child.create_time() >= 8 for child in terraform_children(proc)), 180, interval=0.2)  # fmt: skip
        assert waited and proc.poll() is None, (
            "pipeline.sh did not wait for the held lock (LOCK_TIMEOUT=120s): "
            f"{'it exited ' + str(proc.returncode) if proc.poll() is not None else 'no plan or apply started'}: "
            f"{log.read_text(errors='replace')[-800:]}"
        )
        pipeline.release_lock(lease)
        code = proc.wait(timeout=180)
    finally:
        stop_learner(proc)
    assert code == 0, f"pipeline.sh failed after the lock was released: {log.read_text(errors='replace')[-800:]}"
    assert pipeline.replicas("dev") == 3, "after the lock was released, pipeline.sh did not apply dev's change"


@check(points=3, section="Pipeline", timeout=300, hint="Evaluate data.terraform.plan.deny on the saved plan's "
       "show -json (opa eval -d policy -i plan.json) and stop with a non-zero exit before apply when it holds "
       "any message; print the messages.")  # fmt: skip
def test_pipeline_applies_nothing_the_policy_denies(pipeline: Pipeline, kube_api: ApiClient) -> None:
    """a prod plan that deletes a prod namespace is stopped by the policy: pipeline.sh fails and applies nothing"""
    pipeline.set_tenant("prod", replicas=2)
    pipeline.applied("prod")
    core = client.CoreV1Api(kube_api)
    kept = core.read_namespace(pipeline.namespace("prod")).metadata.uid
    newcomer = f"{pipeline.team}b"
    pipeline.set_tenant("prod", replicas=2, teams=(newcomer,))  # the check's team leaves prod: its namespace goes
    done = pipeline.run("prod")
    assert done.returncode != 0, (
        f"pipeline.sh prod applied a plan that deletes prod namespace {pipeline.namespace('prod')}: the policy denies "
        "it, and the pipeline must stop before apply"
    )
    assert core.read_namespace(pipeline.namespace("prod")).metadata.uid == kept, (
        f"pipeline.sh prod failed, but prod namespace {pipeline.namespace('prod')} was deleted anyway"
    )
    made = [ns.metadata.name for ns in core.list_namespace().items if ns.metadata.name == f"{newcomer}-prod"]
    assert not made, f"pipeline.sh prod failed on the policy, but applied part of the plan ({made[0]} was made)"
    assert "den" in (done.stdout + done.stderr).lower(), (
        f"pipeline.sh prod stopped, but does not say the policy denied the plan: {done.tail()}"
    )


@check(points=4, section="Pipeline", timeout=300, hint="In envs/main.tf: moved { from = module.team, to = "
       "module.tenant } (state written under the old name moves, nothing is destroyed); import { for_each = "
       "var.adopt, to = module.tenant[each.key].kubernetes_namespace.this, id = \"${each.key}-${var.environment}\" } "
       "with variable \"adopt\" (a set of teams, default []).")  # fmt: skip
def test_pipeline_refactors_without_destroy(pipeline: Pipeline, kube_api: ApiClient) -> None:
    """state written as module.team moves to module.tenant with nothing destroyed; a namespace made by hand is imported unchanged"""
    pipeline.set_tenant("dev", replicas=2)
    pipeline.applied("dev")
    # The state as the configuration's first version wrote it, before the module call was renamed.
    pipeline.terraform("dev", "state", "mv", "-lock-timeout=30s", f'module.tenant["{pipeline.team}"]',
                       f'module.team["{pipeline.team}"]')  # fmt: skip
    # A namespace the team made by hand, as Terraform would have made it (the labels of the one applied).
    adopted = f"{pipeline.team}x"
    core = client.CoreV1Api(kube_api)
    model = core.read_namespace(pipeline.namespace("dev")).metadata
    body = client.V1Namespace(metadata=client.V1ObjectMeta(
        name=f"{adopted}-dev",
        labels={k: v.replace(pipeline.team, adopted) for k, v in (model.labels or {}).items()
                if k != "kubernetes.io/metadata.name"},
        annotations={k: v.replace(pipeline.team, adopted) for k, v in (model.annotations or {}).items()},
    ))  # fmt: skip
    uid = core.create_namespace(body).metadata.uid
    pipeline.set_tenant("dev", replicas=2, teams=(pipeline.team, adopted), adopt=(adopted,))
    pipeline.applied("dev", "--plan")
    changes = pipeline.saved_plan("dev").get("resource_changes", [])
    destroyed = sorted(c["address"] for c in changes if "delete" in c["change"]["actions"])
    assert not destroyed, (
        f"after the module call was renamed (state says module.team), the plan destroys {', '.join(destroyed[:4])}{' ...' if len(destroyed) > 4 else ''}: "
        "a moved block keeps what exists"
    )
    moved = [c for c in changes if str(c.get("previous_address", "")).startswith("module.team[")]
    assert moved, "the plan moves nothing from module.team to module.tenant: the state written as module.team is lost"
    namespace = next((c for c in changes if c["address"] == f'module.tenant["{adopted}"].kubernetes_namespace.this'),
                     None)  # fmt: skip
    assert namespace is not None and namespace["change"].get("importing"), (
        f'the plan does not import namespace {adopted}-dev (adopt = ["{adopted}"]): '
        f"{'it creates it' if namespace and namespace['change']['actions'] == ['create'] else 'it is not in the plan'}"
    )
    changed = adoption_changes(namespace["change"]) if namespace["change"]["actions"] != ["no-op"] else []
    assert not changed, (
        f"namespace {adopted}-dev is imported but the plan changes its {', '.join(changed)} too: it was made exactly "
        "as the same module made your first tenant's namespace"
    )
    pipeline.applied("dev", "--apply")
    assert core.read_namespace(f"{adopted}-dev").metadata.uid == uid, f"namespace {adopted}-dev was made again"
    assert pipeline.replicas("dev") == 2, "the renamed tenant's Deployment is gone after the apply"


@check(points=4, section="Drift", timeout=300, hint="drift.py plans each workspace in --envs as it is initialised "
       "(the pipeline's backend), with TF_WORKSPACE and -var-file=W.tfvars; the grader sets TF_VAR_kubeconfig. "
       "The pipeline's apply puts back what the code says: the hand edit is undone.")  # fmt: skip
def test_drift_on_the_cluster_is_found_then_repaired(pipeline: Pipeline, kube_api: ApiClient, scratch: Path) -> None:
    """a Deployment scaled by hand: drift.py reports dev drifted; pipeline.sh dev puts it back and drift.py then finds it in sync"""
    pipeline.set_tenant("dev", replicas=2)
    pipeline.applied("dev")
    apps = client.AppsV1Api(kube_api)
    apps.patch_namespaced_deployment_scale("app", pipeline.namespace("dev"), {"spec": {"replicas": 5}})
    envs = pipeline.work.root / "envs"
    env = {**pipeline.env("30s"), "TF_VAR_kubeconfig": str(pipeline.kubeconfig)}

    def drift(url: str) -> tuple[int, dict[str, float], str]:
        args = [python(), str(learner_file(pipeline.work.root, "drift.py")), "--envs", str(envs), "--workspace", "dev",
                "--pushgateway", url, "--terraform", pipeline.work.binary]  # fmt: skip
        done = run_learner(args, cwd=scratch, timeout=180, env=env, what="drift.py", sandbox=pipeline.work.sandbox)
        return done.returncode, _pushed(url, ["dev"])["dev"], done.tail()

    with private_pushgateway(scratch) as url:
        code, pushed, tail = drift(url)
        assert code == 2 and pushed.get("terraform_drift_detected") == 1, (
            f"Deployment app in {pipeline.namespace('dev')} was scaled to 5 by hand (the code says 2): drift.py exited "
            f"{code} (want 2) and pushed {pushed or 'nothing'} for dev: {tail}"
        )
        pipeline.applied("dev")
        assert pipeline.replicas("dev") == 2, "pipeline.sh dev did not put the replicas back to what the code says (2)"
        code, pushed, tail = drift(url)
        assert code == 0 and pushed.get("terraform_drift_detected") == 0, (
            f"after the pipeline's apply, dev is in sync again: drift.py exited {code} and pushed {pushed}: {tail}"
        )
