"""Reading the API server's audit log (the lines are the shape kube-apiserver writes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from opslab.incidents.timeline import responder_actions
from opslab.runtime.components.kube import (
    AUDIT_POLICY,
    INCIDENT_RESPONDER,
    TERRAFORM_RUNNER,
    AuditedRequest,
    audited_requests,
)


def event(user: str, namespace: str, name: str, code: int) -> str:
    return json.dumps({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "stage": "ResponseComplete",
        "verb": "create", "user": {"username": user, "groups": ["system:serviceaccounts"]},
        "objectRef": {"resource": "pods", "namespace": namespace, "name": name, "apiVersion": "v1",
                      "subresource": "eviction"},
        "responseStatus": {"metadata": {}, "status": "Failure", "reason": "TooManyRequests", "code": code},
    })  # fmt: skip


def test_each_request_is_read_with_who_what_and_the_answer(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.write_text(
        event("system:serviceaccount:a:learner", "cell", "checkout-1", 429) + "\n"
        + '{"kind": "Event", "verb": "cre'  # a line the API server is still writing
        + "\n" + event("admin", "cell", "checkout-2", 201) + "\n"
    )  # fmt: skip
    assert list(audited_requests(log)) == [
        AuditedRequest("system:serviceaccount:a:learner", "create", "cell", "checkout-1", "pods/eviction", 429),
        AuditedRequest("admin", "create", "cell", "checkout-2", "pods/eviction", 201),
    ]


def test_a_missing_log_has_no_requests(tmp_path: Path) -> None:
    assert list(audited_requests(tmp_path / "absent.log")) == []


def test_the_policy_audits_evictions_pod_removals_the_responders_writes_and_nothing_else() -> None:
    policy = yaml.safe_load(AUDIT_POLICY)
    assert policy["kind"] == "Policy"
    first, deletes, not_ready, responder, last = policy["rules"]
    assert first == {"level": "Metadata", "resources": [{"group": "", "resources": ["pods/eviction"]}]}
    # who removed a pod, and which pods the node controller marked not ready: a grader's evidence
    # when a pod disappears that its budget protected
    assert deletes == {
        "level": "Metadata",
        "resources": [{"group": "", "resources": ["pods"]}],
        "verbs": ["delete", "deletecollection"],
    }
    assert not_ready["users"] == ["system:serviceaccount:kube-system:node-controller"]
    assert not_ready["resources"] == [{"group": "", "resources": ["pods/status"]}]
    assert responder == {
        "level": "Metadata",
        "users": [INCIDENT_RESPONDER, TERRAFORM_RUNNER],
        "verbs": ["create", "update", "patch", "delete", "deletecollection"],
    }
    assert last == {"level": "None"}


def test_a_request_carries_the_time_the_api_server_answered(tmp_path: Path) -> None:
    line = json.loads(event(INCIDENT_RESPONDER, "shop", "cart-1", 201))
    line["stageTimestamp"] = "2026-12-02T19:54:37.123456Z"
    log = tmp_path / "audit.log"
    log.write_text(json.dumps(line) + "\n")
    (request,) = audited_requests(log)
    assert request.time == pytest.approx(1796241277.123456)


def test_the_responders_actions_include_their_terraform_changes_but_not_its_state(tmp_path: Path) -> None:
    def stamped(user: str, namespace: str, name: str, at: str) -> str:
        line = json.loads(event(user, namespace, name, 201))
        line["stageTimestamp"] = at
        return json.dumps(line)

    log = tmp_path / "audit.log"
    log.write_text("\n".join([
        stamped(INCIDENT_RESPONDER, "shop", "cart-1", "2026-12-03T10:00:01Z"),
        stamped(TERRAFORM_RUNNER, "opslab-terraform", "lock-tfstate-default-platform", "2026-12-03T10:00:02Z"),
        stamped(TERRAFORM_RUNNER, "shop", "opslab-quota", "2026-12-03T10:00:03Z"),
        stamped("system:serviceaccount:kube-system:deployment-controller", "shop", "cart-2", "2026-12-03T10:00:04Z"),
        stamped(INCIDENT_RESPONDER, "shop", "cart-3", "2026-12-03T11:00:00Z"),  # after the incident
    ]) + "\n")  # fmt: skip
    start = 1796292000.0  # 2026-12-03T10:00:00Z
    actions = responder_actions(log, start, start + 60)
    assert [(a.namespace, a.name) for a in actions] == [("shop", "cart-1"), ("shop", "opslab-quota")]
