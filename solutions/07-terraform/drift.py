"""Drift detection for lab 7's environments: is the cluster still what each workspace's state and
configuration say? Pushes the answer per workspace to the Pushgateway, where Prometheus's
`TerraformDriftDetected` alert reads it.

usage: python drift.py [--envs DIR] [--workspace W ...] [--pushgateway URL] [--terraform BIN]

Per workspace (the terraform binary from $TERRAFORM, else `terraform`), `plan -detailed-exitcode`
decides: exit 2 means the cluster differs from the code (someone edited it, or a change was never
applied), 0 that it matches, 1 that the check failed (reported, never taken for "no drift"). When
something differs, `plan -refresh-only` says which objects were changed outside Terraform. Alone,
refresh-only is too noisy with the 1.13.4 provider: it records each object's resourceVersion, so
every object whose status moved (a Deployment's rollout) counts as changed.
Neither plan takes the state lock (-lock=false): a check must never block an apply.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

JOB = "terraform-drift"


def plan(terraform: str, envs: Path, workspace: str, *extra: str) -> tuple[int, dict[str, Any], str]:
    """Exit code, the plan as JSON ({} on error) and stderr of one detailed-exitcode plan."""
    env = {**os.environ, "TF_WORKSPACE": workspace, "TF_IN_AUTOMATION": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "plan"
        args = [
            terraform,
            f"-chdir={envs}",
            "plan",
            "-detailed-exitcode",
            "-input=false",
            "-lock=false",
            "-no-color",
            f"-var-file={workspace}.tfvars",
            f"-out={out}",
            *extra,
        ]
        done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
        if done.returncode not in (0, 2):
            return 1, {}, done.stderr.strip()
        shown = subprocess.run(
            [terraform, f"-chdir={envs}", "show", "-json", str(out)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if shown.returncode != 0:
            return 1, {}, shown.stderr.strip()
        return done.returncode, json.loads(shown.stdout), ""


def failed(workspace: str, what: str, error: str) -> dict[str, float]:
    last = error.splitlines()[-1] if error else "no message"
    print(f"drift: {workspace}: {what} failed: {last}", file=sys.stderr)
    return {"success": 0}


def check(terraform: str, envs: Path, workspace: str) -> dict[str, float]:
    planned, full_plan, error = plan(terraform, envs, workspace)
    if planned == 1:
        return failed(workspace, "the plan", error)
    differing = [
        r["address"]
        for r in full_plan.get("resource_changes", [])
        if r["change"]["actions"] not in (["no-op"], ["read"])
    ]
    outside: set[str] = set()
    if differing:  # which of them someone changed (the refresh-only plan alone also counts status churn)
        refreshed, drift_plan, _ = plan(terraform, envs, workspace, "-refresh-only")
        outside = {r["address"] for r in drift_plan.get("resource_drift", [])} if refreshed != 1 else set()
    for address in differing:
        why = "changed outside Terraform" if address in outside else "differs from the code"
        print(f"drift: {workspace}: {address} {why}")
    return {"success": 1, "drifted": float(bool(differing)), "resources": len(differing)}


def push(url: str, workspace: str, result: dict[str, float]) -> None:
    registry = CollectorRegistry()
    Gauge("terraform_drift_check_success", "1 when the last drift check of the workspace ran", registry=registry).set(
        result["success"]
    )
    Gauge("terraform_drift_last_check_timestamp_seconds", "When the workspace was last checked", registry=registry).set(
        time.time()
    )
    if result["success"]:
        Gauge(
            "terraform_drift_detected", "1 when the cluster differs from the workspace's state", registry=registry
        ).set(result["drifted"])
        Gauge("terraform_drift_resources", "Objects that differ from the code", registry=registry).set(
            result["resources"]
        )
    push_to_gateway(url, job=JOB, registry=registry, grouping_key={"workspace": workspace})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=Path, default=Path(__file__).resolve().parent / "envs")
    parser.add_argument("--workspace", action="append", default=[], help="default: dev, staging, prod")
    parser.add_argument("--pushgateway", default=os.environ.get("OPSLAB_PUSHGATEWAY_URL", "http://127.0.0.1:19091"))
    parser.add_argument("--terraform", default=os.environ.get("TERRAFORM", "terraform"))
    args = parser.parse_args(argv)
    failed = drifted = 0
    for workspace in args.workspace or ["dev", "staging", "prod"]:
        result = check(args.terraform, args.envs, workspace)
        try:
            push(args.pushgateway, workspace, result)
        except OSError as exc:
            print(f"drift: cannot push to {args.pushgateway}: {exc}", file=sys.stderr)
            return 1
        failed += not result["success"]
        drifted += bool(result.get("drifted"))
        state = "check failed" if not result["success"] else ("DRIFT" if result["drifted"] else "in sync")
        print(f"drift: {workspace}: {state}")
    return 1 if failed else (2 if drifted else 0)


if __name__ == "__main__":
    sys.exit(main())
