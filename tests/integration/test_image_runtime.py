"""The registry runtime on the platform: a pod labelled opslab.dev/runtime=registry runs only what the
platform's registry holds (the GitOps reconciler's image runtime pulls, KWOK's stages act on it). An
image pinned by digest starts and turns Ready; one whose config says dev.opslab.ready=false runs
and never turns Ready; a missing one waits in ImagePullBackOff until it is pushed; an image of
another registry cannot be pulled; a pod without the label is KWOK's as before."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from opslab.grading.fixtures import eventually
from opslab.runtime.lifecycle import Platform
from tests.integration.test_registry import crane, layer

pytestmark = pytest.mark.platform
WAIT = 60.0


def deployment(name: str, image: str, *, runtime: bool = True) -> dict[str, Any]:
    labels = {"app": name, **({"opslab.dev/runtime": "registry"} if runtime else {})}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "app", "image": image}]}}},
    }  # fmt: skip


def test_pods_of_the_registry_runtime_run_only_what_the_registry_holds(
    platform: Platform, api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    registry = f"127.0.0.1:{platform.settings.ports.registry}"
    repository = f"{registry}/t/app-{uuid.uuid4().hex[:6]}"
    good = crane("append", "--new_layer", str(layer(tmp_path / "v1.tar", "VERSION", "1\n")),
                 "--new_tag", f"{repository}:1.0.0")  # fmt: skip
    bad = crane("mutate", f"{repository}:1.0.0", "--label", "dev.opslab.ready=false", "--tag", f"{repository}:bad")
    cases = {
        "pinned": good,  # repository@sha256:...
        "unready": bad,
        "missing": f"{repository}:2.0.0",
        "foreign": "shop/app:1.0.0",
    }
    for name, image in cases.items():
        apps.create_namespaced_deployment(namespace, deployment(name, image))
    apps.create_namespaced_deployment(namespace, deployment("plain", "shop/app:1.0.0", runtime=False))

    def pod(app: str) -> client.V1Pod | None:
        pods = core.list_namespaced_pod(namespace, label_selector=f"app={app}").items
        return pods[0] if pods else None

    def ready(app: str) -> bool:
        found = pod(app)
        conditions = (found.status.conditions or []) if found and found.status else []
        return any(c.type == "Ready" and c.status == "True" for c in conditions)

    def verdict(app: str) -> str:
        found = pod(app)
        return (found.metadata.labels or {}).get("opslab.dev/image", "") if found else ""

    def waiting(app: str) -> str:
        found = pod(app)
        statuses = (found.status.container_statuses or []) if found and found.status else []
        return statuses[0].state.waiting.reason if statuses and statuses[0].state.waiting else ""

    assert eventually(lambda: ready("pinned") and ready("plain"), WAIT), (verdict("pinned"), pod("pinned"))
    assert verdict("pinned") == "pulled" and verdict("plain") == ""
    assert eventually(lambda: verdict("unready") == "unready" and pod("unready").status.phase == "Running", WAIT)  # type: ignore[union-attr]
    for app in ("missing", "foreign"):
        assert eventually(lambda app=app: waiting(app) == "ImagePullBackOff", WAIT), (app, verdict(app))
        assert pod(app).status.phase == "Pending" and not ready(app)  # type: ignore[union-attr]
    events = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={pod('foreign').metadata.name}")  # type: ignore[union-attr]
    assert any("only the platform's registry" in (e.message or "") for e in events.items), events.items
    # The tests' "unready" pod stays unready: a readiness probe that fails keeps failing.
    assert not ready("unready")

    # The missing tag is pushed: the next pull finds it and the pod starts.
    crane("tag", good, "2.0.0")
    assert eventually(lambda: ready("missing"), WAIT), (verdict("missing"), waiting("missing"))
