"""Stand-ins for the shop's collaborators (the cluster view, Redis, the order bus) and a client
that talks to the shop's ASGI app in-process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from prometheus_client import generate_latest

from opslab.shop import contract
from opslab.shop.faults import Fault
from opslab.shop.model import Capacity
from opslab.shop.server import Shop
from opslab.shop.telemetry import Metrics, ServiceLogs


class FakeView:
    """A cluster view with ``ready`` pods per service and the faults a test sets."""

    def __init__(self, ready: int = 2) -> None:
        self.ready = ready
        self.version = 0
        self._faults: tuple[Fault, ...] = ()

    def capacity(self, _service: str) -> Capacity:
        return Capacity(ready=self.ready)

    def faults(self) -> tuple[Fault, ...]:
        return self._faults

    def set_faults(self, *faults: Fault) -> None:
        self._faults = faults
        self.version += 1


class FakeRedis:
    def __init__(self) -> None:
        self.hashes: dict[str, dict[bytes, bytes]] = {}

    async def hgetall(self, key: str) -> dict[bytes, bytes]:
        return dict(self.hashes.get(key, {}))

    async def hincrby(self, key: str, field: str, amount: int) -> int:
        entry = self.hashes.setdefault(key, {})
        entry[field.encode()] = str(int(entry.get(field.encode(), b"0")) + amount).encode()
        return int(entry[field.encode()])

    async def expire(self, _key: str, _seconds: int) -> bool:
        return True

    async def delete(self, key: str) -> int:
        return 1 if self.hashes.pop(key, None) is not None else 0


class FakeBus:
    """Records what checkout publishes to topic orders."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []
        self.published_at: list[float] = []
        """time.monotonic() of each publish."""

    def publish(self, key: str, value: bytes) -> bool:
        self.published.append((key, value))
        self.published_at.append(time.monotonic())
        return True


def make_shop(logs: ServiceLogs, *, view: FakeView | None = None, **options: Any) -> Shop:
    """A shop on fakes, with fresh metrics, logging to ``logs`` (the ``logs`` fixture)."""
    return Shop(view or FakeView(), FakeRedis(), FakeBus(), Metrics(), logs, seed=1, **options)  # type: ignore[arg-type]


def order(number: int, items: dict[str, int] | None = None) -> dict[str, Any]:
    """A valid order event, as checkout publishes it."""
    return contract.new_order(f"ord-{number:012x}", "ada", items or {"sku-003": 2}, 1_700_000_000.0)


def run(shop: Shop, scenario: Callable[[httpx.AsyncClient], Awaitable[Any]]) -> Any:
    """Run ``scenario`` with a client of ``shop`` on a fresh event loop."""

    async def main() -> Any:
        transport = httpx.ASGITransport(app=shop)
        async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
            return await scenario(client)

    return asyncio.run(main())


def exported(metrics: Metrics) -> str:
    """What /metrics would show."""
    return generate_latest(metrics.registry).decode()


def metric(text: str, name: str) -> float:
    """A sample's value from /metrics text (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
