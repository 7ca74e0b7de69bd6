"""The shop's services, the public routes, and the call graph each route walks."""

from __future__ import annotations

from dataclasses import dataclass

from opslab.shop.model import ServiceSpec

NAMESPACE = "shop"
SERVICE_LABEL = "app.kubernetes.io/name"

SERVICES: dict[str, ServiceSpec] = {
    spec.name: spec
    for spec in (
        ServiceSpec("gateway", base_ms=2.0, concurrency=32),
        ServiceSpec("catalog", base_ms=8.0, concurrency=16),
        ServiceSpec("cart", base_ms=4.0, concurrency=16),
        ServiceSpec("checkout", base_ms=15.0, concurrency=8),
        ServiceSpec("payments", base_ms=40.0, concurrency=2),
        ServiceSpec("orders-worker", base_ms=20.0, concurrency=4),
        ServiceSpec("fulfilment", base_ms=10.0, concurrency=16),
    )
}
"""Every service of the shop, each a Deployment of the same name in namespace shop."""

HTTP_SERVICES = ("gateway", "catalog", "cart", "checkout", "payments", "fulfilment")


@dataclass(frozen=True)
class Route:
    """A public route of the gateway and the services it calls, in order."""

    name: str
    method: str
    path: str
    calls: tuple[str, ...]
    """Services visited after the gateway; each hop runs only if the previous one succeeded."""
    weight: int
    """Relative share of the baseline traffic."""


ROUTES: tuple[Route, ...] = (
    Route("list-products", "GET", "/api/products", ("catalog",), 40),
    Route("get-product", "GET", "/api/products/{id}", ("catalog",), 25),
    Route("view-cart", "GET", "/api/cart/{user}", ("cart",), 15),
    Route("add-to-cart", "POST", "/api/cart/{user}/items", ("cart",), 12),
    Route("checkout", "POST", "/api/checkout/{user}", ("checkout", "cart", "payments"), 8),
)

PRODUCTS = tuple(f"sku-{i:03d}" for i in range(1, 41))
PRICES: dict[str, int] = {sku: 100 + index * 7 for index, sku in enumerate(PRODUCTS)}
"""Price of each product in cents."""
