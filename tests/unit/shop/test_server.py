"""The shop's request path beyond fulfilment: a hang on a gateway route."""

import time

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
        response = await client.post("/api/checkout/ada")
        answered = time.monotonic()
        assert response.status_code == 201
        assert len(bus.published) == 1, "the order is published"
        # Held after the publish, not before it: a busy machine only lengthens the gap.
        held = answered - bus.published_at[0]
        assert held >= 0.45, f"answered {held:.3f} s after the publish; the hang holds it 0.5 s"

    run(shop, scenario)
