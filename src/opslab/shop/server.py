"""The shop's HTTP API: one ASGI app that answers each request by walking the call graph.

Every hop asks the queueing model how long it takes and whether it fails, sleeps that long, and
then does the hop's real work: cart reads and writes Redis, checkout publishes the order to Kafka.
A failed dependency makes its caller answer 502, so errors travel up the graph as in a real system.
Fulfilment (/fulfilment/..., opslab.shop.fulfilment) is called by the order pipeline, not through
the gateway: its capture is one hop of its own.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import generate_latest
from redis.exceptions import RedisError

from opslab.shop import contract, model, poison
from opslab.shop import faults as faults_module
from opslab.shop.cluster import ClusterView
from opslab.shop.fulfilment import Fulfilment
from opslab.shop.ledger import LedgerBook
from opslab.shop.orders import OrderBus
from opslab.shop.responses import Receive, Response, Scope, Send, error, send_bytes, send_json
from opslab.shop.telemetry import Metrics, ServiceLogs
from opslab.shop.topology import PRICES, PRODUCTS, SERVICES

_MODELLED: contextvars.ContextVar[list[float]] = contextvars.ContextVar("modelled_seconds")
"""Per request: the latency the model asked for, summed over its hops."""
RETRY_AFTER = ((b"retry-after", b"1"),)


class HopFailed(Exception):
    """A hop answered with an error status; the caller turns it into its own answer."""

    def __init__(self, service: str, status: int, reason: str) -> None:
        super().__init__(f"{service}: {status} {reason}")
        self.service = service
        self.status = status
        self.reason = reason


class Shop:
    """The simulator's request handling. Collaborators are passed in (tests give fakes of Redis)."""

    def __init__(
        self,
        view: ClusterView,
        redis: Any,
        orders: OrderBus,
        metrics: Metrics,
        logs: ServiceLogs,
        *,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        book: LedgerBook | None = None,
        poison_order_rate: float = 0.0,
    ) -> None:
        self.view = view
        self.redis = redis
        self.orders = orders
        self.metrics = metrics
        self.logs = logs
        self.rng = random.Random(seed)
        self.clock = clock
        self.meters = {name: model.RateMeter() for name in SERVICES}
        self._effects: dict[str, model.Effects] = {}
        self._ledger_effects: dict[str, model.Effects] = {}
        self._order_faults: tuple[faults_module.Fault, ...] = ()
        self._faults: tuple[faults_module.Fault, ...] = ()
        self._poison_share = 0.0
        self._effects_version = -1
        self.poison_order_rate = poison_order_rate
        self.stats = metrics.stats
        self.fulfilment = Fulfilment(book or LedgerBook(), metrics.fulfilment, self.modelled, self.ledger_effects)

    # ------------------------------------------------------------------ the model

    def _refresh_faults(self) -> None:
        """Recompute what the faults do, once per change of the cluster view."""
        version = self.view.version
        if self._effects_version == version:
            return
        faults = self.view.faults()
        self._effects = {name: faults_module.effects_on(name, faults) for name in SERVICES}
        self._ledger_effects = {
            ledger: faults_module.effects_on("fulfilment", faults, ledger)
            for ledger in faults_module.scoped_ledgers(faults)
        }
        self._order_faults = faults_module.order_scoped(faults)
        self._faults = faults
        self._poison_share = faults_module.combine(self.poison_order_rate, faults_module.poison_rate(faults))
        self._effects_version = version

    def effects(self, service: str) -> model.Effects:
        """The faults' effect on ``service``, cached until the cluster view changes."""
        self._refresh_faults()
        return self._effects[service]

    def ledger_effects(self, ledger: str, order: str = "") -> model.Effects:
        """The faults' effect on the captures of one fulfilment ledger (and order)."""
        self._refresh_faults()
        if order and any(order in fault.orders for fault in self._order_faults):
            return faults_module.effects_on("fulfilment", self._faults, ledger, order)
        return self._ledger_effects.get(ledger) or self._effects["fulfilment"]

    def poison_share(self) -> float:
        """The share of order events checkout publishes broken (setting and poison-orders faults)."""
        self._refresh_faults()
        return self._poison_share

    def arrival_rate(self, service: str) -> float:
        return self.meters[service].current(self.clock())

    def _draw(self, service: str, now: float, effects: model.Effects) -> model.Outcome:
        """The model's outcome for one request to ``service`` arriving at ``now``."""
        rate = self.meters[service].observe(now)
        outcome = model.hop(SERVICES[service], self.view.capacity(service), rate, effects, self.rng)
        modelled = _MODELLED.get(None)
        if modelled is not None:
            modelled[0] += outcome.latency + outcome.hold
        return outcome

    def _account(
        self, service: str, route: str, status: int, note: str, began: float, *, counted: bool = True, **fields: object
    ) -> None:
        """Count a hop's answer and write its log line (errors always, the rest sampled)."""
        elapsed = self.clock() - began
        if counted:
            self.stats.record(service, route, status, elapsed)
        duration_ms = round(elapsed * 1000, 1)
        if status >= 500:
            self.logs.write(service, "error", note, route=route, status=status, duration_ms=duration_ms, **fields)
        elif self.logs.sample(service):
            level = "warning" if status >= 400 else "info"
            self.logs.write(
                service, level, note or "handled", route=route, status=status, duration_ms=duration_ms, **fields
            )

    async def call(self, service: str, route: str, body: Callable[[], Awaitable[Any]] | None = None) -> Any:
        """One hop: modelled latency and failure for ``service``, then ``body`` (its downstream work)."""
        began = self.clock()
        outcome = self._draw(service, began, self.effects(service))
        inflight = self.stats.inflight
        inflight[service] += 1
        status, reason, result = outcome.status, outcome.reason, None
        try:
            await asyncio.sleep(outcome.latency)
            if outcome.ok and body is not None:
                try:
                    result = await body()
                except HopFailed as failed:
                    status, reason = 502, f"{failed.service} failed: {failed.reason}"
                except (ConnectionError, OSError, TimeoutError, RedisError) as exc:
                    status, reason = 503, f"backing service unavailable: {type(exc).__name__}"
            if outcome.hold:
                await asyncio.sleep(outcome.hold)
        finally:
            inflight[service] -= 1
        self._account(service, route, status, reason, began)
        if status >= 500:
            raise HopFailed(service, status, reason)
        return result

    async def modelled(
        self, service: str, route: str, work: Callable[[], Response], effects: model.Effects, counted: bool = True
    ) -> Response:
        """A hop whose work answers the request itself (fulfilment): the model's latency and failures,
        then ``work`` (synchronous, so atomic on the event loop), then any held answer (a hang).
        ``counted`` False keeps the request out of the service's RED metrics (and so its SLOs)."""
        began = self.clock()
        outcome = self._draw(service, began, effects)
        inflight = self.stats.inflight
        inflight[service] += 1
        try:
            await asyncio.sleep(outcome.latency)
            if outcome.ok:
                response = work()
            else:
                unavailable = outcome.status == 503
                response = error(
                    outcome.status,
                    f"{service}: {outcome.reason}",
                    "unavailable" if unavailable else "server-error",
                    retryable=True,
                    headers=RETRY_AFTER if unavailable else (),
                )
            if outcome.hold:
                await asyncio.sleep(outcome.hold)
        finally:
            inflight[service] -= 1
        self._account(service, route, response.status, response.note, began, counted=counted, **(response.fields or {}))
        return response

    # ------------------------------------------------------------------ routes

    async def list_products(self) -> Response:
        async def catalog() -> list[str]:
            return list(PRODUCTS)

        items = await self.call("gateway", "list-products", lambda: self.call("catalog", "list-products", catalog))
        return Response(200, [{"sku": sku} for sku in items])

    async def get_product(self, sku: str) -> Response:
        async def catalog() -> bool:
            return sku in PRODUCTS

        found = await self.call("gateway", "get-product", lambda: self.call("catalog", "get-product", catalog))
        return (
            Response(200, {"sku": sku, "price_cents": PRICES[sku]})
            if found
            else Response(404, {"error": f"no product {sku}"})
        )

    async def view_cart(self, user: str) -> Response:
        async def cart() -> dict[str, int]:
            raw = await self.redis.hgetall(f"cart:{user}")
            return {k.decode(): int(v) for k, v in raw.items()}

        items = await self.call("gateway", "view-cart", lambda: self.call("cart", "view-cart", cart))
        return Response(200, {"user": user, "items": items})

    async def add_to_cart(self, user: str, payload: dict[str, Any]) -> Response:
        sku, quantity = payload.get("sku"), payload.get("quantity", 1)
        if sku not in PRODUCTS or not isinstance(quantity, int) or not 1 <= quantity <= 100:
            return Response(400, {"error": 'body must be {"sku": <known sku>, "quantity": 1..100}'})

        async def cart() -> int:
            key = f"cart:{user}"
            count = await self.redis.hincrby(key, sku, quantity)
            await self.redis.expire(key, 3600)
            return int(count)

        count = await self.call("gateway", "add-to-cart", lambda: self.call("cart", "add-to-cart", cart))
        return Response(200, {"sku": sku, "quantity": count})

    async def checkout(self, user: str) -> Response:
        route = "checkout"
        order_id = f"ord-{uuid.UUID(int=self.rng.getrandbits(128)).hex[:12]}"

        async def read_cart() -> dict[str, int]:
            raw = await self.redis.hgetall(f"cart:{user}")
            return {k.decode(): int(v) for k, v in raw.items()}

        async def pay() -> str:
            return "authorised"

        async def checkout_body() -> dict[str, Any]:
            items = await self.call("cart", route, read_cart)
            if not items:
                items = {self.rng.choice(PRODUCTS): 1}  # a "buy now" of one item
            await self.call("payments", route, pay)
            order = contract.new_order(order_id, user, items, time.time())
            if not self.orders.publish(order_id, self.order_event(order)):
                raise HopFailed("kafka", 503, "order bus unavailable")
            await self.redis.delete(f"cart:{user}")
            return order

        order = await self.call("gateway", route, lambda: self.call("checkout", route, checkout_body))
        return Response(201, order)

    def order_event(self, order: dict[str, Any]) -> bytes:
        """The event published for ``order``: itself, or (at the poison share) a broken version of it."""
        share = self.poison_share()
        if share and self.rng.random() < share:
            kind = poison.choose(self.rng)
            self.metrics.orders_poisoned.labels(kind.value).inc()
            return poison.poisoned(order, kind, self.rng)
        return json.dumps(order).encode()

    # ------------------------------------------------------------------ ASGI

    async def dispatch(self, method: str, path: str, body: bytes, scope: Scope | None = None) -> Response:
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["fulfilment"]:
            return await self.fulfilment.handle(method, parts[1:], scope or {}, body)
        if parts[:1] != ["api"]:
            return Response(404, {"error": f"no route {method} {path}"})
        rest = parts[1:]
        if method == "GET" and rest == ["products"]:
            return await self.list_products()
        if method == "GET" and len(rest) == 2 and rest[0] == "products":
            return await self.get_product(rest[1])
        if method == "GET" and len(rest) == 2 and rest[0] == "cart":
            return await self.view_cart(rest[1])
        if method == "POST" and len(rest) == 3 and rest[0] == "cart" and rest[2] == "items":
            try:
                payload = json.loads(body or b"{}")
            except ValueError:
                return Response(400, {"error": "body is not JSON"})
            return await self.add_to_cart(rest[1], payload if isinstance(payload, dict) else {})
        if method == "POST" and len(rest) == 2 and rest[0] == "checkout":
            return await self.checkout(rest[1])
        return Response(404, {"error": f"no route {method} {path}"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path, method = scope["path"], scope["method"]
        if path == "/metrics":
            await send_bytes(send, 200, generate_latest(self.metrics.registry), b"text/plain; version=0.0.4")
            return
        if path == "/healthz":
            await send_bytes(send, 200, b"ok", b"text/plain")
            return
        body = b""
        if method == "POST":
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
        began, modelled = self.clock(), [0.0]
        token = _MODELLED.set(modelled)
        try:
            response = await self.dispatch(method, path, body, scope)
        except HopFailed as failed:
            response = Response(failed.status, {"error": failed.reason, "service": failed.service})
        finally:
            _MODELLED.reset(token)
        self.stats.overhead.observe(max(self.clock() - began - modelled[0], 0.0))
        await send_json(send, response)
