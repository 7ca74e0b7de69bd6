"""POST /fulfilment/capture and the ledger routes, through the shop's ASGI app."""

import asyncio
import json
from typing import Any

import httpx
import pytest

from opslab.shop.faults import parse
from opslab.shop.ledger import LedgerBook
from opslab.shop.telemetry import ServiceLogs
from tests.unit.shop.fakes import FakeView, make_shop, metric, order, run

CAPTURE = "/fulfilment/capture"


async def summary(client: httpx.AsyncClient, ledger: str = "default") -> dict[str, Any]:
    answer = await client.get("/fulfilment/ledger/summary", headers={"X-Ledger": ledger})
    assert answer.status_code == 200
    return answer.json()


def test_a_capture_is_recorded_and_answered_with_201(logs: ServiceLogs) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        answer = await client.post(CAPTURE, json=order(1))
        assert answer.status_code == 201
        capture = answer.json()
        assert capture["order_id"] == "ord-000000000001" and capture["amount_cents"] == 228
        assert capture["ledger"] == "default" and capture["idempotency_key"] is None
        assert capture["capture_id"].startswith("cap-") and capture["seq"] == 1
        listed = (await client.get("/fulfilment/ledger")).json()
        assert listed == {"ledger": "default", "captures": [capture], "more": False, "next_after": None}

    run(make_shop(logs), scenario)


def test_a_repeat_without_a_key_is_recorded_again_and_shows_as_a_duplicate(logs: ServiceLogs) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        first = await client.post(CAPTURE, json=order(1))
        second = await client.post(CAPTURE, json=order(1))
        await client.post(CAPTURE, json=order(2))
        assert (first.status_code, second.status_code) == (201, 201)
        assert first.json()["capture_id"] != second.json()["capture_id"]
        assert await summary(client) == {
            "ledger": "default",
            "captures": 3,
            "orders": 2,
            "duplicated_orders": 1,
            "duplicate_captures": 1,
            "amount_cents": 3 * 228,
            "duplicated_order_ids": ["ord-000000000001"],
            "duplicated_order_ids_complete": True,
        }
        by_order = (await client.get("/fulfilment/ledger", params={"order": "ord-000000000001"})).json()
        assert [c["seq"] for c in by_order["captures"]] == [1, 2]

    run(make_shop(logs), scenario)


def test_an_idempotency_key_replays_the_first_capture_and_records_nothing(logs: ServiceLogs) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        key = {"Idempotency-Key": "order-1-capture"}
        first = await client.post(CAPTURE, json=order(1), headers=key)
        again = await client.post(CAPTURE, json={**order(1), "ts": 99.0}, headers=key)  # a redelivery
        assert first.status_code == 201 and "idempotent-replayed" not in first.headers
        assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
        assert again.json() == first.json()
        assert first.json()["idempotency_key"] == "order-1-capture"
        other = await client.post(CAPTURE, json=order(2), headers=key)
        assert other.status_code == 422
        assert other.json()["reason"] == "idempotency-key-reused" and not other.json()["retryable"]
        assert "ord-000000000001" in other.json()["error"]
        assert (await summary(client))["captures"] == 1

    run(make_shop(logs), scenario)


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"{not json", 400, "not-json"),
        (b"[]", 400, "not-an-object"),
        (json.dumps({"order_id": "ord-000000000001"}).encode(), 422, "missing-field"),
        (json.dumps({**order(1), "amount_cents": -228}).encode(), 422, "bad-amount"),
        (json.dumps({**order(1), "items": {"sku-404": 1}}).encode(), 422, "unknown-product"),
        (json.dumps({**order(1), "order_id": "12345"}).encode(), 422, "bad-order-id"),
        (json.dumps({**order(1), "amount_cents": 1}).encode(), 422, "amount-mismatch"),
    ],
)
def test_an_invalid_order_is_refused_for_good_and_never_recorded(
    logs: ServiceLogs, body: bytes, status: int, reason: str
) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        answer = await client.post(CAPTURE, content=body)
        assert answer.status_code == status
        assert answer.json()["reason"] == reason and answer.json()["retryable"] is False
        assert answer.json()["error"]
        assert (await summary(client))["captures"] == 0
        text = (await client.get("/metrics")).text
        assert metric(text, f'shop_fulfilment_rejected_total{{reason="{reason}"}}') == 1
        assert metric(text, f'shop_http_requests_total{{code="{status}",route="capture",service="fulfilment"}}') == 1

    run(make_shop(logs), scenario)


def test_bad_headers_are_refused(logs: ServiceLogs) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        for headers, params in [
            ({"X-Ledger": "Run 1"}, {}),
            ({"X-Ledger": "run-1"}, {"ledger": "run-2"}),
            ({"Idempotency-Key": "x" * 256}, {}),
        ]:
            answer = await client.post(CAPTURE, json=order(1), headers=headers, params=params)
            assert answer.status_code == 400, headers
        assert (await client.get("/fulfilment/ledger", params={"limit": "0"})).status_code == 400
        assert (await client.get("/fulfilment/ledger", params={"since": "yesterday"})).status_code == 400
        assert (await client.get("/fulfilment/ledgers")).json()["entries"] == 0
        assert (await client.put("/fulfilment/ledger")).status_code == 404

    run(make_shop(logs), scenario)


def test_each_ledger_sees_and_deletes_only_its_own_captures(logs: ServiceLogs) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        await client.post(CAPTURE, json=order(1), headers={"X-Ledger": "run-1"})
        await client.post(CAPTURE, json=order(1), params={"ledger": "run-2"})
        await client.post(CAPTURE, json=order(1), headers={"X-Ledger": "run-2"})
        assert (await summary(client, "run-1"))["duplicated_orders"] == 0
        assert (await summary(client, "run-2"))["duplicated_order_ids"] == ["ord-000000000001"]
        assert (await summary(client))["captures"] == 0
        deleted = await client.delete("/fulfilment/ledger", params={"ledger": "run-2"})
        assert deleted.json() == {"ledger": "run-2", "deleted": 2}
        assert (await summary(client, "run-1"))["captures"] == 1
        listing = (await client.get("/fulfilment/ledgers")).json()
        assert listing["ledgers"] == [{"ledger": "run-1", "captures": 1}] and listing["entries"] == 1
        text = (await client.get("/metrics")).text
        assert metric(text, "shop_fulfilment_ledger_entries") == 1 and metric(text, "shop_fulfilment_ledgers") == 1

    run(make_shop(logs), scenario)


def test_a_full_book_answers_507(logs: ServiceLogs) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        await client.post(CAPTURE, json=order(1))
        full = await client.post(CAPTURE, json=order(2))
        assert full.status_code == 507 and full.json()["reason"] == "ledger-full"
        assert "DELETE /fulfilment/ledger" in full.json()["error"]

    run(make_shop(logs, book=LedgerBook(max_entries=1)), scenario)


def test_concurrent_captures_of_distinct_orders_are_all_recorded(logs: ServiceLogs) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        answers = await asyncio.gather(*(client.post(CAPTURE, json=order(n)) for n in range(200)))
        assert {a.status_code for a in answers} == {201}
        assert len({a.json()["capture_id"] for a in answers}) == 200
        totals = await summary(client)
        assert (totals["captures"], totals["orders"], totals["duplicated_orders"]) == (200, 200, 0)
        text = (await client.get("/metrics")).text
        assert metric(text, "shop_fulfilment_captures_total") == 200
        assert metric(text, "shop_fulfilment_duplicate_captures_total") == 0

    run(make_shop(logs), scenario)


def test_concurrent_retries_with_one_key_capture_once(logs: ServiceLogs) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        key = {"Idempotency-Key": "k-1"}
        answers = await asyncio.gather(*(client.post(CAPTURE, json=order(1), headers=key) for _ in range(50)))
        assert sorted(a.status_code for a in answers) == [200] * 49 + [201]
        assert len({a.json()["capture_id"] for a in answers}) == 1
        assert (await summary(client))["captures"] == 1
        text = (await client.get("/metrics")).text
        assert metric(text, "shop_fulfilment_idempotent_replays_total") == 49

    run(make_shop(logs), scenario)


def test_an_error_rate_fault_fails_captures_without_recording_them(logs: ServiceLogs) -> None:
    view = FakeView()
    view.set_faults(parse("f", {"type": "error-rate", "target": "fulfilment", "errorRate": 1}))

    async def scenario(client: httpx.AsyncClient) -> None:
        answer = await client.post(CAPTURE, json=order(1))
        assert answer.status_code == 500 and answer.json()["retryable"] is True
        assert "retry-after" not in answer.headers
        assert (await summary(client))["captures"] == 0, "the ledger stays readable under a fault"

    run(make_shop(logs, view=view), scenario)


def test_an_outage_or_no_ready_pods_answer_503_with_retry_after(logs: ServiceLogs) -> None:
    view = FakeView()
    view.set_faults(parse("f", {"type": "outage", "target": "fulfilment"}))

    async def scenario(client: httpx.AsyncClient) -> None:
        answer = await client.post(CAPTURE, json=order(1))
        assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
        assert answer.json() == {
            "error": "fulfilment: dependency outage (fault)",
            "reason": "unavailable",
            "retryable": True,
        }
        view.set_faults()
        view.ready = 0
        answer = await client.post(CAPTURE, json=order(1))
        assert answer.status_code == 503 and "no ready replicas" in answer.json()["error"]
        assert (await summary(client))["captures"] == 0

    run(make_shop(logs, view=view), scenario)


def test_a_fault_scoped_to_a_ledger_spares_the_others(logs: ServiceLogs) -> None:
    view = FakeView()
    view.set_faults(parse("f", {"type": "outage", "target": "fulfilment", "ledger": "run-1"}))

    async def scenario(client: httpx.AsyncClient) -> None:
        assert (await client.post(CAPTURE, json=order(1), headers={"X-Ledger": "run-1"})).status_code == 503
        assert (await client.post(CAPTURE, json=order(1), headers={"X-Ledger": "run-2"})).status_code == 201
        assert (await client.post(CAPTURE, json=order(1))).status_code == 201

    run(make_shop(logs, view=view), scenario)


def test_only_the_shops_own_ledger_counts_in_its_red_metrics(logs: ServiceLogs) -> None:
    view = FakeView()
    view.set_faults(parse("f", {"type": "error-rate", "target": "fulfilment", "errorRate": 1, "ledger": "run-1"}))

    async def scenario(client: httpx.AsyncClient) -> None:
        assert (await client.post(CAPTURE, json=order(1), headers={"X-Ledger": "run-1"})).status_code == 500
        assert (await client.post(CAPTURE, json=order(1))).status_code == 201
        text = (await client.get("/metrics")).text
        assert metric(text, 'shop_http_requests_total{code="500",route="capture",service="fulfilment"}') == 0, (
            "a grading run's faults must not burn the shop's error budget"
        )
        assert metric(text, 'shop_http_requests_total{code="201",route="capture",service="fulfilment"}') == 1
        assert metric(text, "shop_fulfilment_captures_total") == 1

    run(make_shop(logs, view=view), scenario)


def test_a_fault_scoped_to_some_orders_spares_the_others(logs: ServiceLogs) -> None:
    view = FakeView()
    scoped = {"type": "outage", "target": "fulfilment", "ledger": "run-1", "orders": ["ord-000000000002"]}
    view.set_faults(parse("f", scoped))

    async def scenario(client: httpx.AsyncClient) -> None:
        run1 = {"X-Ledger": "run-1"}
        assert (await client.post(CAPTURE, json=order(2), headers=run1)).status_code == 503
        assert (await client.post(CAPTURE, json=order(1), headers=run1)).status_code == 201
        assert (await client.post(CAPTURE, json=order(2), headers={"X-Ledger": "run-2"})).status_code == 201

    run(make_shop(logs, view=view), scenario)


def test_every_capture_request_is_in_its_ledgers_attempt_log_with_its_answer(logs: ServiceLogs) -> None:
    view = FakeView()
    view.set_faults(parse("f", {"type": "outage", "target": "fulfilment", "ledger": "run-1"}))

    async def scenario(client: httpx.AsyncClient) -> None:
        run1 = {"X-Ledger": "run-1"}
        await client.post(CAPTURE, json=order(1), headers=run1)
        view.set_faults()
        await client.post(CAPTURE, json=order(1), headers=run1)
        await client.post(CAPTURE, json=order(2), headers=run1)
        await client.post(CAPTURE, content=b"{not json", headers=run1)
        await client.post(CAPTURE, json=order(1), headers={"X-Ledger": "run-2"})
        answer = await client.get("/fulfilment/ledger/attempts", params={"order": "ord-000000000001"}, headers=run1)
        attempts = answer.json()["attempts"]
        assert [a["status"] for a in attempts] == [503, 201], "a refused attempt is logged too, run-2's is not"
        assert attempts[0]["at"] <= attempts[1]["at"] and all(a["order_id"] == "ord-000000000001" for a in attempts)
        every = (await client.get("/fulfilment/ledger/attempts", headers=run1)).json()["attempts"]
        assert [(a["order_id"], a["status"]) for a in every] == [
            ("ord-000000000001", 503), ("ord-000000000001", 201), ("ord-000000000002", 201), ("", 400),
        ]  # fmt: skip

    run(make_shop(logs, view=view), scenario)


def test_a_hang_records_the_capture_then_holds_the_answer(logs: ServiceLogs) -> None:
    view = FakeView()
    view.set_faults(parse("f", {"type": "hang", "target": "fulfilment", "hangRate": 1, "hangMs": 1500}))

    async def scenario(client: httpx.AsyncClient) -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        pending = asyncio.create_task(client.post(CAPTURE, json=order(1)))
        captured_while_held = False
        while not pending.done():  # until the capture shows, or the answer comes (a wait on a condition)
            if (await summary(client))["captures"] == 1:
                captured_while_held = not pending.done()
                break
            await asyncio.sleep(0.01)
        assert captured_while_held, "the capture happens first, then the answer is held"
        answer = await pending
        assert answer.status_code == 201 and loop.time() - began >= 1.5

    run(make_shop(logs, view=view), scenario)


def test_other_routes_are_not_fulfilment(logs: ServiceLogs) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        assert (await client.get("/fulfilment/nothing")).status_code == 404
        assert (await client.get(CAPTURE)).status_code == 404
        assert (await client.get("/api/products")).status_code == 200

    run(make_shop(logs), scenario)
