"""The shop's request path beyond fulfilment: a hang on a gateway route."""

import asyncio

import httpx

from opslab.shop.faults import parse
from opslab.shop.telemetry import ServiceLogs
from tests.unit.shop.fakes import FakeBus, FakeView, make_shop, run


def test_a_hang_on_checkout_publishes_the_order_then_holds_the_answer(logs: ServiceLogs) -> None:
    view = FakeView()
    view.set_faults(parse("h", {"type": "hang", "target": "checkout", "hangRate": 1, "hangMs": 500}))
    shop = make_shop(logs, view=view)
    bus = shop.orders
    assert isinstance(bus, FakeBus)

    async def scenario(client: httpx.AsyncClient) -> None:
        pending = asyncio.create_task(client.post("/api/checkout/ada"))
        await asyncio.sleep(0.35)
        assert not pending.done() and len(bus.published) == 1, "published, but not answered yet"
        assert (await pending).status_code == 201

    run(shop, scenario)
