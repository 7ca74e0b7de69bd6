"""The shop on the real platform: API, Redis, Kafka, live capacity, faults, logs, events."""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import httpx
import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from opslab.primitives.readiness import ProbeResult, wait_until
from opslab.runtime.lifecycle import Platform

pytestmark = pytest.mark.platform


def shop(platform: Platform) -> str:
    return f"http://127.0.0.1:{platform.settings.ports.shop}"


def metric(platform: Platform, name: str) -> float:
    text = httpx.get(f"{shop(platform)}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} is not exported")


def test_a_checkout_goes_through_redis_and_kafka(platform: Platform) -> None:
    user = f"it-{uuid.uuid4().hex[:6]}"
    base = shop(platform)
    assert httpx.post(f"{base}/api/cart/{user}/items", json={"sku": "sku-003", "quantity": 2}).status_code == 200
    assert httpx.get(f"{base}/api/cart/{user}").json()["items"] == {"sku-003": 2}
    consumed_before = metric(platform, "shop_orders_consumed_total")
    order = httpx.post(f"{base}/api/checkout/{user}", timeout=10)
    assert order.status_code == 201, order.text
    assert order.json()["items"] == {"sku-003": 2}
    assert httpx.get(f"{base}/api/cart/{user}").json()["items"] == {}, "checkout empties the cart in Redis"
    wait_until(
        lambda: ProbeResult(metric(platform, "shop_orders_consumed_total") > consumed_before),
        what="orders-worker to consume the order",
        timeout=30,
    )


def test_bad_requests_are_refused_clearly(platform: Platform) -> None:
    base = shop(platform)
    bad = httpx.post(f"{base}/api/cart/u/items", json={"sku": "nope"})
    assert bad.status_code == 400 and "known sku" in bad.json()["error"]
    assert httpx.get(f"{base}/api/products/sku-999").status_code == 404
    assert httpx.get(f"{base}/api/nothing").status_code == 404


def test_capacity_follows_the_deployment(platform: Platform, api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    base = shop(platform)

    def recorded(reason: str) -> ProbeResult:
        events = client.CoreV1Api(api).list_namespaced_event("shop", field_selector="involvedObject.name=catalog")
        reasons = {e.reason for e in events.items}
        return ProbeResult(reason in reasons, f"events of catalog: {sorted(reasons)}")

    apps.patch_namespaced_deployment_scale("catalog", "shop", {"spec": {"replicas": 0}})
    try:
        wait_until(
            lambda: ProbeResult(httpx.get(f"{base}/api/products").status_code == 502),
            what="catalog to fail without replicas",
            timeout=30,
        )
        answer = httpx.get(f"{base}/api/products").json()
        assert answer == {"error": "catalog failed: no ready replicas", "service": "gateway"}
        # The shop's monitor looks once a second: an outage shorter than that can go unrecorded.
        wait_until(lambda: recorded("ServiceUnavailable"), what="a ServiceUnavailable event on catalog", timeout=15)
    finally:
        apps.patch_namespaced_deployment_scale("catalog", "shop", {"spec": {"replicas": 2}})
    wait_until(
        lambda: ProbeResult(httpx.get(f"{base}/api/products").status_code == 200),
        what="catalog to serve again",
        timeout=30,
    )
    wait_until(lambda: recorded("ServiceRecovered"), what="a ServiceRecovered event on catalog", timeout=15)


def test_a_fault_is_applied_and_reverted(platform: Platform, api: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api)
    args = ("opslab.dev", "v1alpha1", "shop", "faults")
    body = {
        "apiVersion": "opslab.dev/v1alpha1",
        "kind": "Fault",
        "metadata": {"name": "it-latency"},
        "spec": {"type": "latency", "target": "catalog", "latencyMs": 300},
    }
    custom.create_namespaced_custom_object(*args, body)
    base = shop(platform)
    try:
        wait_until(
            lambda: ProbeResult(
                (custom.get_namespaced_custom_object(*args, "it-latency").get("status") or {}).get("phase") == "Active"
            ),
            what="the Fault to become Active",
            timeout=30,
        )
        began = time.monotonic()
        assert httpx.get(f"{base}/api/products", timeout=5).status_code == 200
        assert time.monotonic() - began >= 0.3
    finally:
        custom.delete_namespaced_custom_object(*args, "it-latency")

    def gone() -> ProbeResult:
        try:
            custom.get_namespaced_custom_object(*args, "it-latency")
        except ApiException as exc:
            return ProbeResult(exc.status == 404)
        return ProbeResult(False, "still there (finalizer)")

    wait_until(gone, what="the Fault to be reverted and removed", timeout=30)
    began = time.monotonic()
    httpx.get(f"{base}/api/products", timeout=5)
    assert time.monotonic() - began < 0.3


def test_the_crd_rejects_an_invalid_fault(api: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api)
    body = {
        "apiVersion": "opslab.dev/v1alpha1",
        "kind": "Fault",
        "metadata": {"name": "it-invalid"},
        "spec": {"type": "latency", "target": "database"},
    }
    with pytest.raises(ApiException) as refused:
        custom.create_namespaced_custom_object("opslab.dev", "v1alpha1", "shop", "faults", body)
    assert refused.value.status == 422
    assert "spec.target" in refused.value.body


def test_each_service_writes_json_logs(platform: Platform) -> None:
    httpx.get(f"{shop(platform)}/api/products")
    lines = (platform.paths.logs / "shop" / "catalog.log").read_text().strip().splitlines()
    record = json.loads(lines[-1])
    assert record["service"] == "catalog" and record["route"] in {"list-products", "get-product"}
    assert {"ts", "level", "msg", "status", "duration_ms"} <= set(record)


def test_dashboard_queries_return_data_from_the_live_prometheus(platform: Platform) -> None:
    dashboard = json.loads((platform.paths.platform / "kind" / "grafana" / "shop-slo.json").read_text())
    prometheus = f"http://127.0.0.1:{platform.settings.ports.prometheus}"

    def panels_with_data() -> ProbeResult:
        empty = []
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                expr = target["expr"].replace("$service", ".*")
                answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
                assert answer["status"] == "success", f"{panel['title']}: {answer}"
                if not answer["data"]["result"]:
                    empty.append(panel["title"])
        return ProbeResult(len(empty) <= 2, f"panels without data: {empty}")

    # The SLI windows need a minute or so of samples: a platform just started has none yet.
    wait_until(panels_with_data, what="the dashboard's panels to show data", timeout=120, max_interval=10)


def test_kind_profile_manifests_pass_a_server_side_dry_run(platform: Platform) -> None:
    kubectl = platform.ctx.toolchain.require("kubectl")
    result = subprocess.run(
        [str(kubectl), "--kubeconfig", str(platform.paths.kubeconfig), "apply", "--dry-run=server", "-k",
         str(platform.paths.platform / "kind")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "deployment.apps/shop-simulator created (server dry run)" in result.stdout
    assert "configmap/opslab-shop-dashboard created (server dry run)" in result.stdout


def capture_body(order: dict) -> dict:
    return {key: order[key] for key in ("order_id", "amount_cents", "items")}


def test_fulfilment_captures_a_real_order_and_its_ledger_shows_the_double_capture(platform: Platform) -> None:
    base, ledger = shop(platform), f"it-{uuid.uuid4().hex[:8]}"
    scope = {"X-Ledger": ledger}
    order = httpx.post(f"{base}/api/checkout/it-{uuid.uuid4().hex[:6]}", timeout=10).json()
    assert order["amount_cents"] > 0
    first = httpx.post(f"{base}/fulfilment/capture", json=order, headers=scope, timeout=10)
    assert first.status_code == 201, first.text
    again = httpx.post(f"{base}/fulfilment/capture", json=capture_body(order), headers=scope, timeout=10)
    assert again.status_code == 201 and again.json()["capture_id"] != first.json()["capture_id"]
    keyed = {**scope, "Idempotency-Key": f"{order['order_id']}-capture"}
    once = httpx.post(f"{base}/fulfilment/capture", json=order, headers=keyed, timeout=10)
    replay = httpx.post(f"{base}/fulfilment/capture", json=order, headers=keyed, timeout=10)
    assert (once.status_code, replay.status_code) == (201, 200)
    assert replay.json() == once.json() and replay.headers["idempotent-replayed"] == "true"
    poison = httpx.post(
        f"{base}/fulfilment/capture", json={**order, "items": {"sku-999": 1}}, headers=scope, timeout=10
    )
    assert poison.status_code == 422 and poison.json()["reason"] == "unknown-product"

    summary = httpx.get(f"{base}/fulfilment/ledger/summary", params={"ledger": ledger}, timeout=5).json()
    assert (summary["captures"], summary["orders"], summary["duplicated_orders"]) == (3, 1, 1)
    assert summary["duplicated_order_ids"] == [order["order_id"]]
    assert httpx.get(f"{base}/fulfilment/ledger/summary", timeout=5).json()["ledger"] == "default"
    assert metric(platform, "shop_fulfilment_duplicate_captures_total") >= 2
    deleted = httpx.delete(f"{base}/fulfilment/ledger", headers=scope, timeout=5).json()
    assert deleted == {"ledger": ledger, "deleted": 3}


def test_a_fault_on_fulfilment_can_be_scoped_to_one_ledger(platform: Platform, api: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api)
    args = ("opslab.dev", "v1alpha1", "shop", "faults")
    base, ledger = shop(platform), f"it-{uuid.uuid4().hex[:8]}"
    name = f"it-fulfilment-{ledger}"
    spec = {"type": "outage", "target": "fulfilment", "ledger": ledger}
    custom.create_namespaced_custom_object(*args, {"apiVersion": "opslab.dev/v1alpha1", "kind": "Fault",
                                                   "metadata": {"name": name}, "spec": spec})  # fmt: skip
    order = {"order_id": f"ord-{uuid.uuid4().hex[:12]}", "amount_cents": 114, "items": {"sku-003": 1}}
    try:
        wait_until(
            lambda: ProbeResult(
                httpx.post(f"{base}/fulfilment/capture", json=order, headers={"X-Ledger": ledger}).status_code == 503
            ),
            what="the outage to reach the run's ledger",
            timeout=30,
        )
        answer = httpx.post(f"{base}/fulfilment/capture", json=order, headers={"X-Ledger": ledger}, timeout=5)
        assert answer.headers["retry-after"] == "1" and answer.json()["retryable"] is True
        other = httpx.post(f"{base}/fulfilment/capture", json=order, headers={"X-Ledger": f"{ledger}-b"}, timeout=5)
        assert other.status_code == 201, "another ledger is not affected"
    finally:
        custom.delete_namespaced_custom_object(*args, name)
        for scope in (ledger, f"{ledger}-b"):
            httpx.delete(f"{base}/fulfilment/ledger", params={"ledger": scope}, timeout=5)


def test_orders_worker_survives_poison_orders(platform: Platform, api: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api)
    args = ("opslab.dev", "v1alpha1", "shop", "faults")
    base = shop(platform)
    body = {"apiVersion": "opslab.dev/v1alpha1", "kind": "Fault", "metadata": {"name": "it-poison"},
            "spec": {"type": "poison-orders", "poisonRate": 1}}  # fmt: skip
    rejected_before = metric(platform, 'shop_orders_rejected_total{reason="not-json"}')
    custom.create_namespaced_custom_object(*args, body)
    try:
        wait_until(
            lambda: ProbeResult(
                httpx.post(f"{base}/api/checkout/it-poison", timeout=10).status_code == 201
                and sum(
                    metric(platform, f'shop_orders_rejected_total{{reason="{reason}"}}')
                    for reason in ("not-json", "missing-field", "bad-order-id", "bad-amount", "unknown-product")
                )
                > rejected_before
            ),
            what="orders-worker to set a poison order aside",
            timeout=60,
        )
    finally:
        custom.delete_namespaced_custom_object(*args, "it-poison")
    consumed_before = metric(platform, "shop_orders_consumed_total")
    wait_until(
        lambda: ProbeResult(
            httpx.post(f"{base}/api/checkout/it-poison", timeout=10).status_code == 201
            and metric(platform, "shop_orders_consumed_total") > consumed_before
        ),
        what="orders-worker to go on processing good orders",
        timeout=60,
    )
