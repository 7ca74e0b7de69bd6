"""Load for the shop, with named shapes: steady, spike, ramp, soak.

The scenario runner starts locust headless with this file and sets:
  OPSLAB_LOAD_SHAPE     steady | spike | ramp | soak
  OPSLAB_LOAD_RPS       requests per second at the base level (each user makes about one per second)
  OPSLAB_LOAD_DURATION  seconds; the shape stops the test after it (every run is bounded)
  OPSLAB_LOAD_MIX       browse (default: the shop's usual route mix) | checkout (mostly checkouts)
  OPSLAB_LOAD_USER_RPS  requests per second of one simulated user (default 1; the benchmark uses 10
                        so that locust needs fewer users for the same load)
Run by hand:  OPSLAB_LOAD_SHAPE=spike locust -f scenarios/load/locustfile.py --headless --host http://127.0.0.1:18080
"""

from __future__ import annotations

import os
import random

from locust import FastHttpUser, LoadTestShape, constant_throughput, task

SHAPE = os.environ.get("OPSLAB_LOAD_SHAPE", "steady")
BASE_RPS = float(os.environ.get("OPSLAB_LOAD_RPS", "20"))
DURATION = float(os.environ.get("OPSLAB_LOAD_DURATION", "120"))
MIX = os.environ.get("OPSLAB_LOAD_MIX", "browse")
USER_RPS = float(os.environ.get("OPSLAB_LOAD_USER_RPS", "1"))
PRODUCTS = [f"sku-{i:03d}" for i in range(1, 41)]
WEIGHTS = {"browse": (40, 25, 15, 12, 8), "checkout": (5, 5, 5, 15, 70)}[MIX]


class Shopper(FastHttpUser):
    """One shopper, about USER_RPS requests per second, over the gateway's public routes."""

    wait_time = constant_throughput(USER_RPS)

    def on_start(self) -> None:
        self.user_id = f"load-{random.randint(1, 10_000)}"

    @task(WEIGHTS[0])
    def list_products(self) -> None:
        self.client.get("/api/products", name="list-products")

    @task(WEIGHTS[1])
    def get_product(self) -> None:
        self.client.get(f"/api/products/{random.choice(PRODUCTS)}", name="get-product")

    @task(WEIGHTS[2])
    def view_cart(self) -> None:
        self.client.get(f"/api/cart/{self.user_id}", name="view-cart")

    @task(WEIGHTS[3])
    def add_to_cart(self) -> None:
        self.client.post(
            f"/api/cart/{self.user_id}/items", json={"sku": random.choice(PRODUCTS), "quantity": 1}, name="add-to-cart"
        )

    @task(WEIGHTS[4])
    def checkout(self) -> None:
        self.client.post(f"/api/checkout/{self.user_id}", name="checkout")


class OpslabShape(LoadTestShape):
    """Users (about requests per second) over time for the shape named by OPSLAB_LOAD_SHAPE."""

    def users_at(self, t: float) -> float:
        if SHAPE == "steady":
            return BASE_RPS
        if SHAPE == "spike":  # base, then 6x for the middle third, then base again
            return BASE_RPS * 6 if DURATION / 3 <= t < 2 * DURATION / 3 else BASE_RPS
        if SHAPE == "ramp":  # from 10 % to 100 % of 3x base over the run
            return BASE_RPS * 3 * (0.1 + 0.9 * min(t / DURATION, 1.0))
        if SHAPE == "soak":  # a low, constant load meant to run for a long time
            return max(BASE_RPS / 4, 1)
        raise ValueError(f"unknown OPSLAB_LOAD_SHAPE {SHAPE!r}: use steady, spike, ramp or soak")

    def tick(self) -> tuple[int, float] | None:
        t = self.get_run_time()
        if t >= DURATION:
            return None
        users = max(round(self.users_at(t) / USER_RPS), 1)
        return users, max(users, 10)
