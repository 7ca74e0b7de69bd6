"""Drain a node safely: cordon it, then evict its pods through the Eviction API, which honours
PodDisruptionBudgets. An eviction a budget refuses (HTTP 429) is retried until --timeout; what
could not be moved is reported, never forced.

usage: python drain.py NODE [--timeout SECONDS] [--kubeconfig FILE]
Prints a JSON report on stdout; exits 0 if every pod was evicted, 1 if some were refused,
2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from kubernetes import client, config
from kubernetes.client.rest import ApiException


def movable(pod: client.V1Pod) -> bool:
    """Pods a drain moves: not mirror pods, not DaemonSet pods, not already going away."""
    annotations = pod.metadata.annotations or {}
    if "kubernetes.io/config.mirror" in annotations or pod.metadata.deletion_timestamp:
        return False
    return not any(ref.kind == "DaemonSet" for ref in pod.metadata.owner_references or [])


def drain(core: client.CoreV1Api, node: str, timeout: float, poll: float = 1.0) -> dict:
    began = time.monotonic()
    core.patch_node(node, {"spec": {"unschedulable": True}})
    pods = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}").items
    pending = {f"{p.metadata.namespace}/{p.metadata.name}": p for p in pods if movable(p)}
    evicted, refused = [], {}
    deadline = began + timeout
    while pending and time.monotonic() < deadline:
        for key, pod in list(pending.items()):
            body = client.V1Eviction(
                metadata=client.V1ObjectMeta(name=pod.metadata.name, namespace=pod.metadata.namespace)
            )
            try:
                core.create_namespaced_pod_eviction(pod.metadata.name, pod.metadata.namespace, body)
            except ApiException as exc:
                if exc.status == 404:  # already gone
                    pending.pop(key)
                    evicted.append(key)
                elif exc.status == 429:  # a disruption budget says no, for now
                    refused[key] = "eviction refused by a PodDisruptionBudget"
                else:
                    refused[key] = f"eviction failed: {exc.status} {exc.reason}"
                continue
            pending.pop(key)
            refused.pop(key, None)
            evicted.append(key)
        if pending:
            time.sleep(poll)
    return {
        "node": node,
        "cordoned": True,
        "evicted": sorted(evicted),
        "refused": [
            {"pod": key, "reason": refused.get(key, "not evicted before the timeout")} for key in sorted(pending)
        ],
        "timed_out": bool(pending),
        "seconds": round(time.monotonic() - began, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="Cordon a node and evict its pods, respecting PodDisruptionBudgets.")
    parser.add_argument("node")
    parser.add_argument("--timeout", type=float, default=120.0, help="give up on refused evictions after this (s)")
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    args = parser.parse_args()
    if args.timeout <= 0:
        print("error: --timeout must be positive", file=sys.stderr)
        return 2
    try:
        config.load_kube_config(config_file=args.kubeconfig)
    except Exception as exc:
        print(f"error: cannot load the kubeconfig ({exc}); pass --kubeconfig or set KUBECONFIG", file=sys.stderr)
        return 2
    core = client.CoreV1Api()
    try:
        core.read_node(args.node)
    except ApiException as exc:
        if exc.status == 404:
            print(f"error: node {args.node} not found; see `kubectl get nodes`", file=sys.stderr)
            return 2
        raise
    report = drain(core, args.node, args.timeout)
    print(json.dumps(report, indent=1))
    return 1 if report["refused"] else 0


if __name__ == "__main__":
    sys.exit(main())
