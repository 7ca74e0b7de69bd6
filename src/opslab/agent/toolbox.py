"""The toolbox: what an agent (or the oracle) may read and do during an incident.

Read tools show what an on-call engineer sees: alerts, PromQL, the shop's logs, events, workloads,
nodes, rollout history and the call graph. They never show the injector: Fault objects are out of the
responder's RBAC, and the labels and annotations that carry a fault are redacted.

Action tools run as the incident's responder (ServiceAccount shop/incident-responder, never the
admin), each only after the policy server (OPA, platform/policy) allows it; a denial raises
PolicyDenied with the policy's reasons. terraform_plan and terraform_apply run an allow-listed
configuration as the least-privilege terraform runner instead (opslab.agent.terraform_tools), and
apply only the plan just shown. Every call (arguments, decision, result or error, latency) is
appended to a JSON-lines record, and every write records its inverse, so a run can be rolled back.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ansible_runner
import httpx
from kubernetes import client
from kubernetes.client.rest import ApiException

from opslab.agent.policy import Decision, Policy
from opslab.agent.terraform_tools import ShownPlan, TerraformFailed, TerraformTools
from opslab.runtime import kube
from opslab.shop.topology import NAMESPACE, ROUTES, SERVICE_LABEL, SERVICES

HIDDEN_PREFIXES = ("opslab.dev/fault", "opslab.dev/build", "opslab.dev/original", "opslab.dev/incident")
"""Label and annotation keys that carry or describe an injected fault: never shown."""
ACTIONS = (
    "scale", "rollout_undo", "rollout_restart", "patch_resources", "set_image", "cordon", "uncordon", "drain",
    "run_playbook",
)  # fmt: skip
"""The toolbox's action tools: each passes the policy before it runs, and records its inverse."""
REVISION = "deployment.kubernetes.io/revision"
LOCAL_INVENTORY = 'localhost ansible_connection=local ansible_python_interpreter="{{ ansible_playbook_python }}"'
"""Playbooks run on this machine, with the Python that runs opslab (which has the kubernetes client)."""
INTENDED = "opslab.dev/replicas"


class PolicyDenied(Exception):
    """The policy refused an action; ``reasons`` say why."""

    def __init__(self, tool: str, reasons: tuple[str, ...]) -> None:
        super().__init__(f"{tool} denied by policy: {'; '.join(reasons)}")
        self.tool = tool
        self.reasons = reasons


class ToolError(Exception):
    """An action that could not be done (no such service, nothing to roll back to)."""


@dataclass
class CallRecord:
    path: Path
    actions: list[dict[str, Any]] = field(default_factory=list)

    def write(self, entry: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(json.dumps(entry, default=str) + "\n")


def redact(value: Any) -> Any:
    """``value`` without the keys that carry an injected fault (in labels and annotations)."""
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items() if not str(k).startswith(HIDDEN_PREFIXES)}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def _raw(response: Any) -> Any:
    return json.loads(response.data)


class Toolbox:
    def __init__(
        self,
        *,
        kubeconfig: Path,
        prometheus: str,
        alertmanager: str,
        policy: Policy,
        record: Path,
        logs: Path,
        submit: Callable[[str, str, str], None] | None = None,
        playbooks: Path | None = None,
        namespace: str = NAMESPACE,
        terraform: TerraformTools | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        """Where the workloads are: the shop's, or a grading run's copy of them."""
        self.playbooks = playbooks
        self.api = kube.api_client(kubeconfig)
        self.apps = client.AppsV1Api(self.api)
        self.core = client.CoreV1Api(self.api)
        self.prometheus = prometheus.rstrip("/")
        self.alertmanager = alertmanager.rstrip("/")
        self.policy = policy
        self.record = CallRecord(record)
        self.logs_dir = logs
        self._submit = submit
        self._http = httpx.Client(timeout=10)
        self.terraform = terraform
        self._shown: dict[str, ShownPlan] = {}
        """The plan last shown of each Terraform configuration: the only one terraform_apply applies."""

    def close(self) -> None:
        self._http.close()
        self.policy.close()
        self.api.close()
        if self.terraform is not None:
            self.terraform.close()

    # ------------------------------------------------------------------ recording

    @contextlib.contextmanager
    def _recorded(self, tool: str, args: dict[str, Any], decision: Decision | None = None) -> Iterator[dict[str, Any]]:
        began = time.monotonic()
        entry: dict[str, Any] = {"t": time.time(), "tool": tool, "args": args}
        if decision is not None:
            entry["decision"] = {"allow": decision.allow, "reasons": list(decision.reasons)}
        try:
            yield entry
        except Exception as exc:
            entry["error"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise
        finally:
            entry["latency_ms"] = round((time.monotonic() - began) * 1000, 1)
            self.record.write(entry)
            if decision is not None and decision.allow and "error" not in entry:
                self.record.actions.append(entry)

    def _read(self, tool: str, args: dict[str, Any], body: Callable[[], Any]) -> Any:
        with self._recorded(tool, args) as entry:
            result = body()
            entry["result"] = _summary(result)
            return result

    def _act(
        self,
        tool: str,
        target: dict[str, str],
        args: dict[str, Any],
        body: Callable[[], tuple[Any, Any]],
        facts: dict[str, Any] | None = None,
    ) -> Any:
        """Ask the policy (``facts``: what else it needs to know), then run ``body`` if allowed."""
        key = f"{target['namespace']}/{target['name']}" if target.get("namespace") else target["name"]
        now = time.time()
        recent = [
            {"tool": a["tool"], "target": a["target"], "seconds_ago": round(now - a["t"], 1)}
            for a in self.record.actions
        ]
        decision = self.policy.decide({"tool": tool, "target": target, "args": args, "recent": recent, **(facts or {})})
        with self._recorded(tool, {**args, "target": key}, decision) as entry:
            entry["target"] = key
            if not decision.allow:
                raise PolicyDenied(tool, decision.reasons)
            result, inverse = body()
            entry["result"] = result
            entry["inverse"] = inverse
            return result

    # ------------------------------------------------------------------ read tools

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts firing now (Watchdog aside): name, labels, summary, since when."""

        def body() -> list[dict[str, Any]]:
            response = self._http.get(f"{self.alertmanager}/api/v2/alerts", params={"active": "true"})
            response.raise_for_status()
            return [
                {
                    "alertname": a["labels"].get("alertname", ""),
                    "labels": a["labels"],
                    "summary": (a.get("annotations") or {}).get("summary", ""),
                    "startsAt": a.get("startsAt", ""),
                }
                for a in response.json()
                if a["labels"].get("alertname") != "Watchdog"
            ]

        return list(self._read("alerts", {}, body))

    def query(self, promql: str) -> list[dict[str, Any]]:
        """A PromQL instant query: [{metric: {...}, value: float}]."""

        def body() -> list[dict[str, Any]]:
            response = self._http.get(f"{self.prometheus}/api/v1/query", params={"query": promql})
            response.raise_for_status()
            return [{"metric": r["metric"], "value": float(r["value"][1])} for r in response.json()["data"]["result"]]

        return list(self._read("query", {"promql": promql}, body))

    def query_range(self, promql: str, minutes: float = 10, step: float = 15) -> list[dict[str, Any]]:
        """A PromQL range query over the last ``minutes``: [{metric, values: [[t, v], ...]}]."""

        def body() -> list[dict[str, Any]]:
            end = time.time()
            response = self._http.get(
                f"{self.prometheus}/api/v1/query_range",
                params={"query": promql, "start": end - minutes * 60, "end": end, "step": step},
            )
            response.raise_for_status()
            return [
                {"metric": r["metric"], "values": [[float(t), float(v)] for t, v in r["values"]]}
                for r in response.json()["data"]["result"]
            ]

        return list(self._read("query_range", {"promql": promql, "minutes": minutes, "step": step}, body))

    def logs(self, service: str, lines: int = 40) -> list[str]:
        """The last ``lines`` lines of a shop service's JSON log."""
        _check_service(service)

        def body() -> list[str]:
            path = self.logs_dir / f"{service}.log"
            if not path.is_file():
                return []
            return path.read_text(errors="replace").splitlines()[-max(1, min(lines, 500)) :]

        return list(self._read("logs", {"service": service, "lines": lines}, body))

    def events(self, limit: int = 40) -> list[dict[str, Any]]:
        """The newest Kubernetes events in the shop: time, type, reason, object, message."""

        def body() -> list[dict[str, Any]]:
            items = _raw(self.core.list_namespaced_event(self.namespace, _preload_content=False))["items"]
            rows = [
                {
                    "time": e.get("lastTimestamp") or e.get("eventTime") or e["metadata"].get("creationTimestamp"),
                    "type": e.get("type", ""),
                    "reason": e.get("reason", ""),
                    "object": f"{e['involvedObject'].get('kind', '')}/{e['involvedObject'].get('name', '')}",
                    "message": e.get("message", ""),
                }
                for e in items
            ]
            return sorted(rows, key=lambda r: str(r["time"]))[-limit:]

        return list(self._read("events", {"limit": limit}, body))

    def deployments(self) -> list[dict[str, Any]]:
        """Each shop Deployment: replicas (spec, intended, ready, updated), image, CPU limit, revision."""

        def body() -> list[dict[str, Any]]:
            rows = []
            for d in _raw(self.apps.list_namespaced_deployment(self.namespace, _preload_content=False))["items"]:
                container = d["spec"]["template"]["spec"]["containers"][0]
                status = d.get("status") or {}
                annotations = d["metadata"].get("annotations") or {}
                rows.append(
                    {
                        "name": d["metadata"]["name"],
                        "replicas": d["spec"].get("replicas", 1),
                        "intended": int(annotations[INTENDED]) if INTENDED in annotations else None,
                        "ready": status.get("readyReplicas", 0),
                        "updated": status.get("updatedReplicas", 0),
                        "unavailable": status.get("unavailableReplicas", 0),
                        "image": container.get("image", ""),
                        "cpu_limit": ((container.get("resources") or {}).get("limits") or {}).get("cpu", ""),
                        "revision": int(annotations.get(REVISION, "0")),
                    }
                )
            return rows

        return list(self._read("deployments", {}, body))

    def pods(self, service: str = "") -> list[dict[str, Any]]:
        """Shop pods: service, node, phase, ready, restarts, waiting reason, last termination reason."""
        if service:
            _check_service(service)

        def body() -> list[dict[str, Any]]:
            selector = f"{SERVICE_LABEL}={service}" if service else ""
            items = _raw(self.core.list_namespaced_pod(self.namespace, label_selector=selector, _preload_content=False))
            rows = []
            for p in items["items"]:
                status = p.get("status") or {}
                containers = status.get("containerStatuses") or [{}]
                c = containers[0]
                rows.append(
                    {
                        "name": p["metadata"]["name"],
                        "service": (p["metadata"].get("labels") or {}).get(SERVICE_LABEL, ""),
                        "node": p["spec"].get("nodeName", ""),
                        "phase": status.get("phase", ""),
                        "ready": any(
                            x.get("type") == "Ready" and x.get("status") == "True"
                            for x in status.get("conditions") or []
                        ),
                        "restarts": c.get("restartCount", 0),
                        "waiting": ((c.get("state") or {}).get("waiting") or {}).get("reason", ""),
                        "last_terminated": ((c.get("lastState") or {}).get("terminated") or {}).get("reason", ""),
                        "image": p["spec"]["containers"][0].get("image", ""),
                        "revision_hash": (p["metadata"].get("labels") or {}).get("pod-template-hash", ""),
                        "created": p["metadata"].get("creationTimestamp", ""),
                    }
                )
            return rows

        return list(self._read("pods", {"service": service}, body))

    def nodes(self) -> list[dict[str, Any]]:
        """Nodes: ready, cordoned, the reason they are not ready, taints."""

        def body() -> list[dict[str, Any]]:
            rows = []
            for n in _raw(self.core.list_node(_preload_content=False))["items"]:
                ready: dict[str, Any] = next(
                    (c for c in n["status"].get("conditions") or [] if c["type"] == "Ready"), {}
                )
                rows.append(
                    {
                        "name": n["metadata"]["name"],
                        "ready": ready.get("status") == "True",
                        "reason": ready.get("reason", ""),
                        "cordoned": bool(n["spec"].get("unschedulable")),
                        "taints": [f"{t['key']}:{t['effect']}" for t in n["spec"].get("taints") or []],
                    }
                )
            return rows

        return list(self._read("nodes", {}, body))

    def rollout_history(self, service: str) -> list[dict[str, Any]]:
        """A Deployment's revisions, oldest first: revision, image, CPU limit, created."""
        _check_service(service)
        return list(self._read("rollout_history", {"service": service}, lambda: self._history(service)))

    def describe(self, kind: str, name: str) -> dict[str, Any]:
        """A Deployment, Pod or Node as the API server has it (fault carriers redacted)."""

        def body() -> dict[str, Any]:
            if kind.lower() in ("deployment", "deploy"):
                raw = _raw(self.apps.read_namespaced_deployment(name, self.namespace, _preload_content=False))
            elif kind.lower() == "pod":
                raw = _raw(self.core.read_namespaced_pod(name, self.namespace, _preload_content=False))
            elif kind.lower() == "node":
                raw = _raw(self.core.read_node(name, _preload_content=False))
            else:
                raise ToolError(f"describe knows Deployment, Pod and Node, not {kind}")
            raw.get("metadata", {}).pop("managedFields", None)
            return dict(redact(raw))

        return dict(self._read("describe", {"kind": kind, "name": name}, body))

    def topology(self) -> dict[str, Any]:
        """The shop's services and the call graph of each public route."""
        return dict(
            self._read(
                "topology",
                {},
                lambda: {
                    "services": list(SERVICES),
                    "routes": [{"route": r.name, "calls": ["gateway", *r.calls]} for r in ROUTES],
                },
            )
        )

    def _history(self, service: str) -> list[dict[str, Any]]:
        deployment = _raw(self.apps.read_namespaced_deployment(service, self.namespace, _preload_content=False))
        uid = deployment["metadata"]["uid"]
        items = _raw(self.apps.list_namespaced_replica_set(self.namespace, _preload_content=False))["items"]
        rows = []
        for rs in items:
            if not any(o.get("uid") == uid for o in rs["metadata"].get("ownerReferences") or []):
                continue
            container = rs["spec"]["template"]["spec"]["containers"][0]
            rows.append(
                {
                    "revision": int((rs["metadata"].get("annotations") or {}).get(REVISION, "0")),
                    "hash": (rs["metadata"].get("labels") or {}).get("pod-template-hash", ""),
                    "image": container.get("image", ""),
                    "cpu_limit": ((container.get("resources") or {}).get("limits") or {}).get("cpu", ""),
                    "created": rs["metadata"].get("creationTimestamp", ""),
                    "replicas": (rs.get("status") or {}).get("replicas", 0),
                    "template": redact(rs["spec"]["template"]),
                }
            )
        return sorted(rows, key=lambda r: r["revision"])

    # ------------------------------------------------------------------ action tools

    def scale(self, service: str, replicas: int) -> dict[str, Any]:
        _check_service(service)

        def body() -> tuple[Any, Any]:
            current: Any = self.apps.read_namespaced_deployment_scale(service, self.namespace)
            before = current.spec.replicas
            self.apps.patch_namespaced_deployment_scale(service, self.namespace, {"spec": {"replicas": replicas}})
            inverse = {"tool": "scale", "args": {"service": service, "replicas": before}}
            return {"service": service, "replicas": replicas, "was": before}, inverse

        return dict(self._act("scale", self._deployment(service), {"replicas": replicas}, body))

    def rollout_undo(self, service: str, to_revision: int = 0) -> dict[str, Any]:
        """Roll back to ``to_revision`` (default: the one before the current), like kubectl rollout undo."""
        _check_service(service)

        def body() -> tuple[Any, Any]:
            history = self._history(service)
            deployment = _raw(self.apps.read_namespaced_deployment(service, self.namespace, _preload_content=False))
            current = int((deployment["metadata"].get("annotations") or {}).get(REVISION, "0"))
            older = [r for r in history if r["revision"] < current]
            chosen = (
                next((r for r in history if r["revision"] == to_revision), None)
                if to_revision
                else (older[-1] if older else None)
            )
            if chosen is None:
                raise ToolError(f"{service} has no revision to roll back to (current {current})")
            source = _raw(self.apps.list_namespaced_replica_set(self.namespace, _preload_content=False))["items"]
            template = next(
                rs["spec"]["template"]
                for rs in source
                if (rs["metadata"].get("annotations") or {}).get(REVISION) == str(chosen["revision"])
                and any(
                    o.get("uid") == deployment["metadata"]["uid"] for o in rs["metadata"].get("ownerReferences") or []
                )
            )
            template["metadata"].get("labels", {}).pop("pod-template-hash", None)
            self.apps.patch_namespaced_deployment(
                service, self.namespace, [{"op": "replace", "path": "/spec/template", "value": template}]
            )
            inverse = {"tool": "rollout_undo", "args": {"service": service, "to_revision": current}}
            return {"service": service, "from_revision": current, "to_revision": chosen["revision"]}, inverse

        return dict(self._act("rollout_undo", self._deployment(service), {"to_revision": to_revision}, body))

    def rollout_restart(self, service: str) -> dict[str, Any]:
        _check_service(service)

        def body() -> tuple[Any, Any]:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            patch = {"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": stamp}}}}}
            self.apps.patch_namespaced_deployment(service, self.namespace, patch)
            return {"service": service, "restartedAt": stamp}, None  # a restart cannot be undone

        return dict(self._act("rollout_restart", self._deployment(service), {}, body))

    def patch_resources(self, service: str, cpu_limit: str = "", memory_limit: str = "") -> dict[str, Any]:
        """Set a Deployment's CPU and/or memory limit (its first container)."""
        _check_service(service)
        if not cpu_limit and not memory_limit:
            raise ToolError("patch_resources needs cpu_limit or memory_limit")

        def body() -> tuple[Any, Any]:
            deployment: Any = self.apps.read_namespaced_deployment(service, self.namespace)
            container = deployment.spec.template.spec.containers[0]
            limits = dict((container.resources.limits if container.resources else None) or {})
            wanted = {k: v for k, v in (("cpu", cpu_limit), ("memory", memory_limit)) if v}
            patch = {
                "spec": {
                    "template": {"spec": {"containers": [{"name": container.name, "resources": {"limits": wanted}}]}}
                }
            }
            self.apps.patch_namespaced_deployment(service, self.namespace, patch)
            inverse = {
                "tool": "patch_resources",
                "args": {"service": service, **{f"{k}_limit": limits.get(k, "") for k in wanted}},
            }
            return {"service": service, "limits": wanted, "was": limits}, inverse

        args = {"cpu_limit": cpu_limit, "memory_limit": memory_limit}
        return dict(self._act("patch_resources", self._deployment(service), args, body))

    def set_image(self, service: str, image: str) -> dict[str, Any]:
        _check_service(service)
        deployment: Any = self.apps.read_namespaced_deployment(service, self.namespace)
        container = deployment.spec.template.spec.containers[0]

        def body() -> tuple[Any, Any]:
            patch = {"spec": {"template": {"spec": {"containers": [{"name": container.name, "image": image}]}}}}
            self.apps.patch_namespaced_deployment(service, self.namespace, patch)
            return {"service": service, "image": image}, {
                "tool": "set_image",
                "args": {"service": service, "image": container.image},
            }

        args = {"image": image, "current_image": container.image}
        return dict(self._act("set_image", self._deployment(service), args, body))

    def cordon(self, node: str) -> dict[str, Any]:
        def body() -> tuple[Any, Any]:
            self.core.patch_node(node, {"spec": {"unschedulable": True}})
            return {"node": node, "cordoned": True}, {"tool": "uncordon", "args": {"node": node}}

        return dict(self._act("cordon", {"kind": "Node", "name": node}, {}, body))

    def uncordon(self, node: str) -> dict[str, Any]:
        def body() -> tuple[Any, Any]:
            self.core.patch_node(node, {"spec": {"unschedulable": None}})
            return {"node": node, "cordoned": False}, {"tool": "cordon", "args": {"node": node}}

        return dict(self._act("uncordon", {"kind": "Node", "name": node}, {}, body))

    def drain(self, node: str) -> dict[str, Any]:
        """Cordon a node and evict the shop's pods from it (their Deployments re-create them elsewhere)."""

        def body() -> tuple[Any, Any]:
            self.core.patch_node(node, {"spec": {"unschedulable": True}})
            pods: Any = self.core.list_namespaced_pod(self.namespace, field_selector=f"spec.nodeName={node}")
            evicted = []
            for pod in pods.items:
                meta = client.V1ObjectMeta(name=pod.metadata.name, namespace=self.namespace)
                eviction = client.V1Eviction(metadata=meta)
                try:
                    self.core.create_namespaced_pod_eviction(pod.metadata.name, self.namespace, eviction)
                    evicted.append(pod.metadata.name)
                except ApiException as exc:
                    if exc.status not in (404, 429):  # gone already; a disruption budget says not now
                        raise
            return {"node": node, "evicted": evicted}, {"tool": "uncordon", "args": {"node": node}}

        return dict(self._act("drain", {"kind": "Node", "name": node}, {}, body))

    def run_playbook(self, playbook: str, service: str) -> dict[str, Any]:
        """Run an allow-listed playbook (a file of platform/playbooks) on a shop Deployment through
        ansible-runner, with the responder's kubeconfig: it can do only what the responder may."""
        _check_service(service)
        allowed = sorted(p.stem for p in self.playbooks.glob("*.yml")) if self.playbooks else []
        if playbook not in allowed:
            raise ToolError(f"unknown playbook {playbook!r}; the allow-list is: {', '.join(allowed) or 'empty'}")
        assert self.playbooks is not None
        path = self.playbooks / f"{playbook}.yml"

        def body() -> tuple[Any, Any]:
            with tempfile.TemporaryDirectory(prefix="opslab-playbook-") as private:
                scratch = Path(private) / "tmp"
                run = ansible_runner.run(
                    private_data_dir=private,
                    playbook=str(path),
                    inventory=LOCAL_INVENTORY,
                    extravars={"target_namespace": self.namespace, "target_deployment": service},
                    envvars={
                        "K8S_AUTH_KUBECONFIG": str(self.kubeconfig),
                        "ANSIBLE_REMOTE_TMP": str(scratch),
                        "ANSIBLE_LOCAL_TEMP": str(scratch),
                        # ansible-playbook of the Python that runs opslab (a `binary` would make
                        # ansible-runner run it raw, without the playbook)
                        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                    },
                    ident="run",
                    quiet=True,
                    suppress_env_files=True,
                    timeout=120,
                )
                if run.status != "successful":
                    tail = " | ".join((run.stdout.read() if run.stdout else "").strip().splitlines()[-3:])
                    raise ToolError(f"playbook {playbook} ended {run.status} (rc {run.rc}): {tail[-400:]}")
                changed = sum((run.stats or {}).get("changed", {}).values())
            return {"playbook": playbook, "service": service, "changed": changed}, None  # not undone for you

        return dict(self._act("run_playbook", self._deployment(service), {"playbook": playbook}, body))

    def terraform_plan(self, config: str) -> dict[str, Any]:
        """Plan an allow-listed Terraform configuration (platform: the namespaces, quotas, limit ranges
        and lab access the platform manages) as the least-privilege terraform runner; what would
        change, and the plan's digest, which terraform_apply needs (within 300 s)."""
        tools = self._terraform(config)

        def body() -> tuple[Any, Any]:
            try:
                shown = tools.plan(config)
            except TerraformFailed as exc:
                raise ToolError(str(exc)) from None
            self._shown[config] = shown
            return shown.as_result(), None  # a plan changes nothing

        return dict(self._act("terraform_plan", {"kind": "Terraform", "name": config}, {}, body))

    def terraform_apply(self, config: str, plan_digest: str) -> dict[str, Any]:
        """Apply the plan terraform_plan just showed (named by its digest), and nothing else."""
        tools = self._terraform(config)
        shown = self._shown.get(config)
        facts = (
            {"plan": {"digest": shown.digest, "shown_seconds_ago": round(time.time() - shown.shown_at, 1)}}
            if shown
            else {}
        )

        def body() -> tuple[Any, Any]:
            if shown is None:  # the policy refuses this; a policy that did not is no reason to apply blind
                raise ToolError(f"no plan of {config} was shown: run terraform_plan first")
            del self._shown[config]  # a saved plan is applied once
            try:
                return tools.apply(shown), None  # undone by planning and applying again, not for you
            except TerraformFailed as exc:
                raise ToolError(str(exc)) from None

        target = {"kind": "Terraform", "name": config}
        return dict(self._act("terraform_apply", target, {"plan_digest": plan_digest}, body, facts))

    def _terraform(self, config: str) -> TerraformTools:
        if self.terraform is None:
            raise ToolError("this toolbox has no Terraform configurations")
        if config not in self.terraform.configs:
            raise ToolError(f"unknown configuration {config!r}; the allow-list is: {', '.join(self.terraform.configs)}")
        return self.terraform

    def submit(self, service: str, fault_type: str, notes: str = "") -> dict[str, Any]:
        """Record a diagnosis with the incident (the same vocabulary as `opslab incident submit`)."""

        def body() -> dict[str, Any]:
            if self._submit is None:
                raise ToolError("no incident to submit to")
            self._submit(service, fault_type, notes)
            return {"service": service, "fault_type": fault_type}

        return dict(self._read("submit", {"service": service, "fault_type": fault_type, "notes": notes}, body))

    def _deployment(self, service: str) -> dict[str, str]:
        return {"kind": "Deployment", "namespace": self.namespace, "name": service}


def _check_service(service: str) -> None:
    if service not in SERVICES:
        raise ToolError(f"unknown service {service!r}; the shop's services are {', '.join(SERVICES)}")


def _summary(result: Any) -> Any:
    """What the record keeps of a read's result: small results whole, large ones by size."""
    text = json.dumps(result, default=str)
    return (
        result if len(text) <= 2000 else {"items": len(result) if isinstance(result, list) else 1, "bytes": len(text)}
    )
