"""Putting an incident's faults in (as the platform's admin) and taking them out again.

Faults go in as one-shot changes a responder can undo with ordinary operations: a release is a
new revision of a Deployment (a new image tag, maybe a pod-template fault label that KWOK's stages
act on, maybe a lower CPU limit, maybe a Fault object scoped to the new image, which the responder
cannot read); a scale-down changes replicas; a node fault labels a node so it reports NotReady; a
quota drift lowers the Terraform-managed ResourceQuota by hand and reschedules a service's pods.
Nothing re-applies a fault once it is in: rolling back, scaling back or applying Terraform's own
configuration again is a real mitigation.

What stays in place until the incident ends (a Fault object, a node's fault label) is a carrier:
removing it is not a mitigation, and the scorer checks that it is still there.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from opslab.incidents.catalog import Incident, NodeDown, QuotaDrift, Release, Scale
from opslab.shop import faults as faults_module
from opslab.shop.topology import NAMESPACE, SERVICE_LABEL

INCIDENT_LABEL = faults_module.SILENT_LABEL
DEPLOY_ID = "opslab.dev/deploy-id"
"""Pod template annotation of an injected release: an opaque id per release, as a CD system stamps
each deploy, so a release is a new revision even when an earlier run shipped the same image (the
Deployment would otherwise bring back that run's old ReplicaSet, and the release would not look
recent)."""


@dataclass
class Injected:
    """What an incident put in, enough to check its carriers and take them out."""

    faults: list[str] = field(default_factory=list)
    """Fault objects created (namespace shop)."""
    nodes: list[str] = field(default_factory=list)
    """Nodes labelled NotReady."""
    quotas: dict[str, str] = field(default_factory=dict)
    """ResourceQuotas (namespace shop) lowered by hand: their pods limit before."""
    log: list[str] = field(default_factory=list)
    """What was done, in words (for the answer)."""


def _container(apps: client.AppsV1Api, service: str) -> tuple[str, str]:
    deployment: Any = apps.read_namespaced_deployment(service, NAMESPACE)
    container = deployment.spec.template.spec.containers[0]
    return str(container.name), str(container.image)


def _release(api: client.ApiClient, run: str, index: int, step: Release, done: Injected) -> None:
    custom, apps = client.CustomObjectsApi(api), client.AppsV1Api(api)
    name, image = _container(apps, step.service)
    new_image = f"{image.rsplit(':', 1)[0]}:{step.tag}"
    if step.request_fault:
        fault = f"incident-{run}-{index}"
        body = {
            "apiVersion": f"{faults_module.GROUP}/{faults_module.VERSION}",
            "kind": "Fault",
            "metadata": {"name": fault, "labels": {INCIDENT_LABEL: run}},
            "spec": {**step.request_fault, "target": step.service, "image": new_image},
        }
        custom.create_namespaced_custom_object(
            faults_module.GROUP, faults_module.VERSION, NAMESPACE, faults_module.PLURAL, body
        )
        done.faults.append(fault)
        done.log.append(f"a Fault {step.request_fault} on {step.service}, only for pods running {new_image}")
    container: dict[str, Any] = {"name": name, "image": new_image}
    if step.cpu_limit:
        container["resources"] = {"limits": {"cpu": step.cpu_limit}}
    deploy_id = hashlib.sha256(f"{run}-{index}".encode()).hexdigest()[:12]
    template: dict[str, Any] = {
        "metadata": {"annotations": {DEPLOY_ID: deploy_id}},
        "spec": {"containers": [container]},
    }
    if step.template_fault:
        template["metadata"]["labels"] = {faults_module.FAULT_LABEL: faults_module.carrier(step.template_fault)}
    apps.patch_namespaced_deployment(step.service, NAMESPACE, {"spec": {"template": template}})
    what = [f"image {new_image}"]
    if step.template_fault:
        what.append(f"pods that {faults_module.DESCRIPTIONS[faults_module.FaultType(step.template_fault)]}")
    if step.cpu_limit:
        what.append(f"a CPU limit of {step.cpu_limit}")
    done.log.append(f"rolled {step.service} out with {', '.join(what)}")


QUOTA = "opslab-quota"
"""The shop's ResourceQuota, managed by platform/terraform (a drift from it is what `plan` shows)."""


def _quota_drift(core: client.CoreV1Api, step: QuotaDrift, done: Injected) -> None:
    """Lower the pods limit to what runs now less the service's pods, then delete those pods."""
    quota: Any = core.read_namespaced_resource_quota(QUOTA, NAMESPACE)
    limit = str(quota.spec.hard["pods"])
    pods: Any = core.list_namespaced_pod(NAMESPACE)
    used = sum(1 for p in pods.items if p.status.phase not in ("Succeeded", "Failed"))  # what the quota counts
    live = [
        p for p in pods.items
        if (p.metadata.labels or {}).get(SERVICE_LABEL) == step.service and not p.metadata.deletion_timestamp
    ]  # fmt: skip
    done.quotas.setdefault(QUOTA, limit)
    squeezed = max(used - len(live), 0)
    core.patch_namespaced_resource_quota(QUOTA, NAMESPACE, {"spec": {"hard": {"pods": str(squeezed)}}})
    for pod in live:
        core.delete_namespaced_pod(pod.metadata.name, NAMESPACE, grace_period_seconds=0)
    done.log.append(
        f"lowered ResourceQuota {QUOTA}'s pods limit by hand from {limit} to {squeezed} (what ran, less "
        f"{step.service}'s {len(live)} pods), then deleted {step.service}'s pods: its ReplicaSet cannot create them"
    )


def busiest_node(core: client.CoreV1Api, rng: random.Random) -> str:
    """The Ready node running the most shop pods (ties broken by ``rng``)."""
    nodes: Any = core.list_node()
    pods: Any = core.list_namespaced_pod(NAMESPACE)
    ready = [
        str(n.metadata.name)
        for n in nodes.items
        if any(c.type == "Ready" and c.status == "True" for c in (n.status.conditions or []))
        and not n.spec.unschedulable
    ]
    counts = dict.fromkeys(sorted(ready), 0)
    for pod in pods.items:
        if (pod.metadata.labels or {}).get(SERVICE_LABEL) and pod.spec.node_name in counts:
            counts[pod.spec.node_name] += 1
    if not counts:
        raise RuntimeError("no Ready node to break")
    most = max(counts.values())
    return rng.choice([n for n, c in counts.items() if c == most])


def inject(api: client.ApiClient, incident: Incident, run: str, seed: int, done: Injected) -> Injected:
    """Apply every injection of ``incident``, recording each in ``done`` as it goes (so a failure
    half-way still leaves a record of what to take out)."""
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    rng = random.Random(seed)
    for index, step in enumerate(incident.injections):
        if isinstance(step, Release):
            _release(api, run, index, step, done)
        elif isinstance(step, Scale):
            apps.patch_namespaced_deployment_scale(step.service, NAMESPACE, {"spec": {"replicas": step.replicas}})
            done.log.append(f"scaled {step.service} to {step.replicas}")
        elif isinstance(step, NodeDown):
            node = busiest_node(core, rng)
            done.nodes.append(node)
            down = faults_module.carrier("node-not-ready")
            core.patch_node(node, {"metadata": {"labels": {faults_module.FAULT_LABEL: down}}})
            done.log.append(f"node {node} (the one running the most shop pods) stopped reporting Ready")
        elif isinstance(step, QuotaDrift):
            _quota_drift(core, step, done)
    return done


def tampered(api: client.ApiClient, done: Injected) -> list[str]:
    """Carriers that are gone although the incident has not ended (someone removed the fault)."""
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    gone = []
    for name in done.faults:
        try:
            obj: Any = custom.get_namespaced_custom_object(
                faults_module.GROUP, faults_module.VERSION, NAMESPACE, faults_module.PLURAL, name
            )
            if obj["metadata"].get("deletionTimestamp"):
                gone.append(f"Fault {name} was deleted")
        except ApiException as exc:
            if exc.status != 404:
                raise
            gone.append(f"Fault {name} was deleted")
    for node in done.nodes:
        try:
            found: Any = core.read_node(node)
            labels = found.metadata.labels or {}
        except ApiException as exc:
            if exc.status != 404:
                raise
            gone.append(f"node {node} was deleted")
            continue
        if labels.get(faults_module.FAULT_LABEL) != faults_module.carrier("node-not-ready"):
            gone.append(f"the fault label of node {node} was removed")
    return gone


def take_out(api: client.ApiClient, done: Injected, cordoned_before: set[str]) -> list[str]:
    """Remove every carrier and uncordon the nodes that were schedulable before the incident."""
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    removed = []
    for name in done.faults:
        try:
            custom.delete_namespaced_custom_object(
                faults_module.GROUP, faults_module.VERSION, NAMESPACE, faults_module.PLURAL, name
            )
            removed.append(f"Fault {name}")
        except ApiException as exc:
            if exc.status != 404:
                raise
    for node in done.nodes:
        try:
            core.patch_node(node, {"metadata": {"labels": {faults_module.FAULT_LABEL: None}}})
            removed.append(f"the fault label of node {node}")
        except ApiException as exc:
            if exc.status != 404:
                raise
    for quota, limit in done.quotas.items():
        found: Any = core.read_namespaced_resource_quota(quota, NAMESPACE)
        if str(found.spec.hard.get("pods")) != limit:
            core.patch_namespaced_resource_quota(quota, NAMESPACE, {"spec": {"hard": {"pods": limit}}})
            removed.append(f"the hand-made pods limit of ResourceQuota {quota} (back to {limit})")
    listing: Any = core.list_node()
    for item in listing.items:
        if item.spec.unschedulable and item.metadata.name not in cordoned_before:
            core.patch_node(item.metadata.name, {"spec": {"unschedulable": None}})
            removed.append(f"the cordon of node {item.metadata.name}")
    return removed


def cordoned(api: client.ApiClient) -> set[str]:
    listing: Any = client.CoreV1Api(api).list_node()
    return {str(n.metadata.name) for n in listing.items if n.spec.unschedulable}
