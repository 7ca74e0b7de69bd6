"""The shop's intended state: taken before an incident, compared at its end, restored after it.

The intent of each Deployment is what `opslab up` applied and the shop ran before the fault went in:
its replicas and its pod template (images, resources, labels). "Mitigated" needs every Deployment
back at that intent, rolled out (all replicas updated and ready) and placed on Ready nodes. A
restart (the kubectl.kubernetes.io/restartedAt annotation) is allowed: it changes no intent.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from opslab.shop.topology import NAMESPACE, SERVICE_LABEL

KEPT_METADATA = ("name", "namespace", "labels", "annotations")


def _raw(response: Any) -> dict[str, Any]:
    return dict(json.loads(response.data))


def deployments(apps: client.AppsV1Api) -> dict[str, dict[str, Any]]:
    """Every shop Deployment as the API server has it (plain dicts)."""
    listing = _raw(apps.list_namespaced_deployment(NAMESPACE, _preload_content=False))
    return {item["metadata"]["name"]: item for item in listing["items"]}


def snapshot(apps: client.AppsV1Api) -> dict[str, dict[str, Any]]:
    """The intent of each shop Deployment: a manifest (metadata it can be re-created from, spec)."""
    intent = {}
    for name, item in deployments(apps).items():
        metadata = {k: v for k, v in item["metadata"].items() if k in KEPT_METADATA}
        metadata.get("annotations", {}).pop("deployment.kubernetes.io/revision", None)
        intent[name] = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": item["spec"]}
    return intent


def _template_intent(template: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a pod template that are intent: labels, and per container its image and resources."""
    return {
        "labels": dict((template.get("metadata") or {}).get("labels") or {}),
        "containers": {
            c["name"]: {"image": c.get("image", ""), "resources": c.get("resources") or {}}
            for c in (template.get("spec") or {}).get("containers") or []
        },
    }


def _describe_template_change(name: str, wanted: dict[str, Any], found: dict[str, Any]) -> list[str]:
    problems = []
    for container, want in wanted["containers"].items():
        have = found["containers"].get(container)
        if have is None:
            problems.append(f"{name}: container {container} is gone from the pod template")
            continue
        if have["image"] != want["image"]:
            problems.append(f"{name}: runs image {have['image']}, intended {want['image']}")
        if have["resources"] != want["resources"]:
            problems.append(f"{name}: resources {have['resources']}, intended {want['resources']}")
    if found["labels"] != wanted["labels"]:
        extra = sorted(set(found["labels"].items()) ^ set(wanted["labels"].items()))
        problems.append(
            f"{name}: pod template labels differ from the intended ones ({', '.join(f'{k}={v}' for k, v in extra)})"
        )
    return problems


ROLLING = "(the rollout is not complete)"
"""How a problem that may pass by itself ends: the intended spec, not yet rolled out."""


def problems(apps: client.AppsV1Api, core: client.CoreV1Api, intent: Mapping[str, dict[str, Any]]) -> list[str]:
    """What differs from ``intent`` now (empty when every Deployment is at its intended state)."""
    found = deployments(apps)
    nodes: Any = core.list_node()
    ready_nodes = {
        n.metadata.name
        for n in nodes.items
        if any(c.type == "Ready" and c.status == "True" for c in (n.status.conditions or []))
    }
    pods: Any = core.list_namespaced_pod(NAMESPACE)
    out: list[str] = []
    for name, manifest in sorted(intent.items()):
        current = found.get(name)
        if current is None:
            out.append(f"{name}: the Deployment was deleted")
            continue
        spec, status = current["spec"], current.get("status") or {}
        wanted_replicas = int(manifest["spec"].get("replicas", 1))
        replicas = int(spec.get("replicas", 1))
        if replicas != wanted_replicas:
            out.append(f"{name}: {replicas} replicas, intended {wanted_replicas}")
        out += _describe_template_change(
            name, _template_intent(manifest["spec"]["template"]), _template_intent(spec["template"])
        )
        if spec.get("paused"):
            out.append(f"{name}: its rollout is paused")
        updated, ready = int(status.get("updatedReplicas") or 0), int(status.get("readyReplicas") or 0)
        if replicas == wanted_replicas and (
            updated < replicas or ready < replicas or status.get("unavailableReplicas")
        ):
            out.append(f"{name}: {ready} of {replicas} replicas ready, {updated} updated {ROLLING}")
        for pod in pods.items:
            labels = pod.metadata.labels or {}
            if labels.get(SERVICE_LABEL) != name or pod.metadata.deletion_timestamp:
                continue
            if pod.spec.node_name and pod.spec.node_name not in ready_nodes and pod.status.phase == "Running":
                out.append(f"{name}: pod {pod.metadata.name} runs on node {pod.spec.node_name}, which is not Ready")
    return out


def restore(apps: client.AppsV1Api, intent: Mapping[str, dict[str, Any]], attempts: int = 5) -> list[str]:
    """Put every Deployment back at its intent (re-create a deleted one); what was restored."""
    restored = []
    found = deployments(apps)
    for name, manifest in sorted(intent.items()):
        current = found.get(name)
        if current is None:
            body: Any = copy.deepcopy(manifest)
            apps.create_namespaced_deployment(NAMESPACE, body)
            restored.append(f"{name}: re-created")
            continue
        same_template = _template_intent(current["spec"]["template"]) == _template_intent(manifest["spec"]["template"])
        same_size = current["spec"].get("replicas") == manifest["spec"].get("replicas")
        if same_template and same_size and not current["spec"].get("paused"):
            continue
        current["spec"]["replicas"] = manifest["spec"].get("replicas")
        current["spec"]["paused"] = False
        if not same_template:
            current["spec"]["template"] = copy.deepcopy(manifest["spec"]["template"])
        try:
            replacement: Any = current
            apps.replace_namespaced_deployment(name, NAMESPACE, replacement)
        except ApiException as exc:
            if exc.status != 409 or attempts <= 1:
                raise
            return restored + restore(apps, intent, attempts - 1)  # changed meanwhile: read again
        restored.append(f"{name}: restored")
    return restored
