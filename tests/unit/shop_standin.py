"""A stand-in for the toolbox's read and action tools over a hand-made shop (the real toolbox needs
a cluster; tests/integration has it): what the oracle and the deterministic model see."""

from __future__ import annotations

import time
from typing import Any

OLD = "2026-01-01T00:00:00Z"


def stamp(seconds_ago: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - seconds_ago))


class Observed:
    """What the read tools return, and the actions taken."""

    def __init__(self) -> None:
        self.deployments_ = {
            name: {"name": name, "replicas": 2, "intended": 2, "ready": 2, "updated": 2, "unavailable": 0}
            for name in ("gateway", "catalog", "cart", "checkout", "payments")
        }
        self.history: dict[str, list[dict[str, Any]]] = {
            name: [{"revision": 1, "hash": f"{name}-1", "image": f"opslab/shop-{name}:1.0.0", "cpu_limit": "500m",
                    "created": OLD}]
            for name in self.deployments_
        }  # fmt: skip
        self.pod_rows: list[dict[str, Any]] = []
        self.nodes_ = [{"name": "n1", "ready": True, "reason": "", "cordoned": False, "taints": []}]
        self.sli: dict[str, dict[str, float]] = {"error_ratio": {}, "slow_ratio": {}}
        self.memory: dict[str, float] = {}
        self.events_: list[dict[str, Any]] = []
        self.actions: list[tuple[str, ...]] = []
        self.submitted: list[tuple[str, str]] = []

    def release(self, service: str, *, image: str = "", cpu: str = "", seconds_ago: float = 120) -> None:
        last = dict(self.history[service][-1])
        last.update(revision=last["revision"] + 1, hash=f"{service}-{last['revision'] + 1}", created=stamp(seconds_ago))
        if image:
            last["image"] = image
        if cpu:
            last["cpu_limit"] = cpu
        self.history[service].append(last)

    # the read tools the oracle uses
    def deployments(self) -> list[dict[str, Any]]:
        return list(self.deployments_.values())

    def rollout_history(self, service: str) -> list[dict[str, Any]]:
        return self.history[service]

    def pods(self, service: str = "") -> list[dict[str, Any]]:
        return [p for p in self.pod_rows if not service or p["service"] == service]

    def nodes(self) -> list[dict[str, Any]]:
        return self.nodes_

    def events(self, limit: int = 40) -> list[dict[str, Any]]:
        return self.events_[-limit:]

    def query(self, promql: str) -> list[dict[str, Any]]:
        if promql == "shop_container_memory_working_set_bytes":
            return [{"metric": {"pod": pod}, "value": value} for pod, value in self.memory.items()]
        name = promql.removeprefix("shop:sli_").removesuffix(":rate25s")
        return [{"metric": {"service": s}, "value": v} for s, v in self.sli[name].items()]

    # the actions
    def rollout_undo(self, service: str, to_revision: int = 0) -> dict[str, Any]:
        self.actions.append(("rollout_undo", service))
        return {}

    def scale(self, service: str, replicas: int) -> dict[str, Any]:
        self.actions.append(("scale", service, str(replicas)))
        return {}

    def drain(self, node: str) -> dict[str, Any]:
        self.actions.append(("drain", node))
        return {}

    def terraform_plan(self, config: str) -> dict[str, Any]:
        self.actions.append(("terraform_plan", config))
        return {"config": config, "plan_digest": "d1g35t", "changes": []}

    def terraform_apply(self, config: str, plan_digest: str) -> dict[str, Any]:
        self.actions.append(("terraform_apply", config, plan_digest))
        return {"config": config, "plan_digest": plan_digest}

    def submit(self, service: str, fault_type: str, notes: str = "") -> dict[str, Any]:
        self.submitted.append((service, fault_type))
        return {"submitted": [service, fault_type]}
