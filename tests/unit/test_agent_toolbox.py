"""The toolbox's guarantees that need no platform: fault carriers are redacted, and the policy
client fails closed."""

from __future__ import annotations

import socket

from opslab.agent.policy import Policy
from opslab.agent.toolbox import redact


def test_redact_removes_fault_carriers_at_any_depth() -> None:
    shown = redact(
        {
            "metadata": {"labels": {"app.kubernetes.io/name": "cart", "opslab.dev/build": "b2c91"}},
            "spec": {"template": {"metadata": {"annotations": {"opslab.dev/original": "x", "keep": "y"}}}},
            "items": [{"opslab.dev/incident": "run"}],
        }
    )
    assert shown == {
        "metadata": {"labels": {"app.kubernetes.io/name": "cart"}},
        "spec": {"template": {"metadata": {"annotations": {"keep": "y"}}}},
        "items": [{}],
    }


def test_a_policy_server_that_does_not_answer_denies() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    policy = Policy(f"http://127.0.0.1:{port}", timeout=1)
    try:
        decision = policy.decide(
            {"tool": "scale", "target": {"kind": "Deployment", "namespace": "shop", "name": "cart"}}
        )
    finally:
        policy.close()
    assert not decision.allow
    assert "did not answer" in decision.reasons[0]
