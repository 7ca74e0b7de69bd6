"""Poison orders: checkout publishes a configured share broken; orders-worker skips them."""

import asyncio
import json
import random
from typing import Any

import httpx

from opslab.shop import contract, poison
from opslab.shop.contract import Order, Violation
from opslab.shop.faults import parse
from opslab.shop.orders import OrdersWorker
from opslab.shop.server import Shop
from opslab.shop.telemetry import Metrics, ServiceLogs
from tests.unit.shop.fakes import FakeBus, FakeView, exported, make_shop, metric, order, run


def published(shop: Shop) -> list[Order | Violation]:
    bus = shop.orders
    assert isinstance(bus, FakeBus)
    return [contract.parse(value) for _key, value in bus.published]


async def checkouts(client: httpx.AsyncClient, count: int = 40) -> list[dict[str, Any]]:
    answers = await asyncio.gather(*(client.post(f"/api/checkout/user-{n}") for n in range(count)))
    assert {a.status_code for a in answers} == {201}
    return [a.json() for a in answers]


def test_by_default_every_order_event_keeps_the_contract(logs: ServiceLogs) -> None:
    shop = make_shop(logs)
    answers = run(shop, checkouts)
    events = published(shop)
    assert all(isinstance(e, Order) for e in events)
    assert sorted(e.order_id for e in events if isinstance(e, Order)) == sorted(a["order_id"] for a in answers)
    assert all(a["amount_cents"] == contract.amount_of(a["items"]) for a in answers)


def test_the_default_share_draws_nothing_so_seeded_runs_repeat(logs: ServiceLogs) -> None:
    shop = make_shop(logs)
    state = shop.rng.getstate()
    assert shop.order_event(order(1)) == json.dumps(order(1)).encode()
    assert shop.rng.getstate() == state


def test_the_setting_poisons_its_share_in_every_kind(logs: ServiceLogs) -> None:
    shop = make_shop(logs, poison_order_rate=1.0)
    answers = run(shop, checkouts)
    events = published(shop)
    assert all(isinstance(e, Violation) for e in events), "every event broken at a share of 1"
    assert {e.reason for e in events if isinstance(e, Violation)} == set(poison.BREAKS.values())
    assert all(contract.ORDER_ID.fullmatch(a["order_id"]) for a in answers), "the customer gets the real order"
    text = exported(shop.metrics)
    assert sum(metric(text, f'shop_orders_poisoned_total{{kind="{kind}"}}') for kind in poison.PoisonKind) == 40


def test_a_poison_orders_fault_adds_to_the_setting(logs: ServiceLogs) -> None:
    view = FakeView()
    shop = make_shop(logs, view=view)
    view.set_faults(parse("p", {"type": "poison-orders", "poisonRate": 0.5}))
    broken = sum(isinstance(contract.parse(shop.order_event(order(n))), Violation) for n in range(400))
    assert 150 < broken < 250
    view.set_faults()
    assert all(isinstance(contract.parse(shop.order_event(order(n))), Order) for n in range(50))


def test_orders_worker_skips_poison_and_carries_on(logs: ServiceLogs) -> None:
    metrics = Metrics()
    worker = OrdersWorker("127.0.0.1:1", metrics, logs, capacity=lambda: 1, throttle=lambda: None)
    rng = random.Random(1)
    events = [poison.poisoned(order(n), kind, rng) for n, kind in enumerate(poison.PoisonKind)]
    events += [b"", b"\x00\xff", b"null", json.dumps(order(99)).encode()]
    results = [worker.process(value, partition=0, offset=n) for n, value in enumerate(events)]
    assert results == [False] * (len(events) - 1) + [True]
    text = exported(metrics)
    assert metric(text, "shop_orders_consumed_total") == 1
    assert metric(text, 'shop_orders_rejected_total{reason="not-json"}') == 3
    logs.flush()
    lines = [json.loads(line) for line in (logs.directory / "orders-worker.log").read_text().splitlines()]
    skipped = [line for line in lines if line["level"] == "warning"]
    assert len(skipped) == len(events) - 1
    assert skipped[0]["offset"] == 0 and skipped[0]["msg"].startswith("skipped a poison order")
