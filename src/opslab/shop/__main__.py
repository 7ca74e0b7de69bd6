"""`python -m opslab.shop`: the shop simulator process (run by the platform's supervisor).

It serves the shop's HTTP API and /metrics on one loopback port, watches the cluster, runs the
orders-worker consumer and the fault controller, and sends a gentle baseline of traffic to itself
so that the metrics are never empty.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import random
import sys
from pathlib import Path

import httpx
import redis.asyncio as aioredis
import uvicorn
import uvloop
from kubernetes import client, config

from opslab.runtime import kube
from opslab.runtime.supervisor import Supervisor
from opslab.shop.cluster import ClusterView
from opslab.shop.controller import FaultController
from opslab.shop.monitor import Monitor
from opslab.shop.orders import OrderBus, OrdersWorker, slow_consumer_cap
from opslab.shop.server import Shop
from opslab.shop.telemetry import Metrics, ServiceLogs
from opslab.shop.topology import PRODUCTS, ROUTES

log = logging.getLogger("opslab.shop")


async def baseline_traffic(port: int, rps: float, seed: int | None) -> None:
    """Requests at about ``rps`` per second over the routes' weights, forever (stopped with the process)."""
    if rps <= 0:
        return
    rng = random.Random(seed)
    routes = list(ROUTES)
    weights = [r.weight for r in routes]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
        while True:
            route = rng.choices(routes, weights)[0]
            user = f"user-{rng.randint(1, 50)}"
            path = route.path.replace("{user}", user).replace("{id}", rng.choice(PRODUCTS))
            try:
                if route.method == "GET":
                    await http.get(path)
                else:
                    await http.post(path, json={"sku": rng.choice(PRODUCTS), "quantity": 1})
            except httpx.HTTPError:
                pass
            await asyncio.sleep(rng.expovariate(rps))


class SupervisedProcesses:
    """Stops and starts platform processes through the platform's supervisor."""

    def __init__(self, state: Path) -> None:
        self.supervisor = Supervisor(state / "supervisor", state / "logs")

    def stop(self, name: str) -> None:
        self.supervisor.stop(name)

    def start(self, name: str) -> None:
        self.supervisor.start(name)


async def serve(args: argparse.Namespace) -> None:
    if args.in_cluster:
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
        api = client.ApiClient(configuration)
    else:
        api = kube.api_client(Path(args.kubeconfig))
    view = ClusterView(api)
    view.start()
    metrics = Metrics()
    logs = ServiceLogs(Path(args.log_dir))
    orders = OrderBus(args.kafka, metrics)
    # A bounded pool: under load, requests queue for a connection instead of opening hundreds.
    pool = aioredis.BlockingConnectionPool.from_url(
        args.redis, max_connections=32, timeout=2, socket_timeout=2, socket_connect_timeout=1
    )
    redis = aioredis.Redis(connection_pool=pool)
    shop = Shop(view, redis, orders, metrics, logs, seed=args.seed, poison_order_rate=args.poison_order_rate)
    worker = OrdersWorker(
        args.kafka,
        metrics,
        logs,
        capacity=lambda: view.capacity("orders-worker").ready,
        throttle=lambda: slow_consumer_cap(view.faults()),
    )
    worker.start()
    processes = None if args.in_cluster else SupervisedProcesses(Path(args.state_dir))
    controller = FaultController(api, processes)
    view.on_change(controller.poke)
    controller.start()
    monitor = Monitor(view, metrics, shop.arrival_rate, api, logs=logs)
    monitor.start()

    async def dependency_checks() -> None:
        while True:
            try:
                await redis.ping()
                metrics.dependency_up.labels("redis").set(1)
            except Exception:
                metrics.dependency_up.labels("redis").set(0)
            await asyncio.to_thread(orders.probe)
            await asyncio.sleep(2)

    server_config = uvicorn.Config(
        shop, host="127.0.0.1", port=args.port, loop="uvloop", http="httptools",
        log_level="warning", access_log=False, lifespan="off", backlog=2048,
        proxy_headers=False, server_header=False, date_header=False,
    )  # fmt: skip
    server = uvicorn.Server(server_config)
    # Long-lived objects (clients, metrics, the cluster view) need no cycle collection; freezing
    # them and collecting less often keeps GC pauses out of the request path's tail latency.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    # Background threads (Kafka, watches) take the GIL in short bursts; a shorter switch interval
    # bounds how long a ready request waits behind one of them.
    sys.setswitchinterval(0.0005)
    tasks = [
        asyncio.create_task(baseline_traffic(args.port, args.baseline_rps, args.seed)),
        asyncio.create_task(dependency_checks()),
    ]
    try:
        await server.serve()
    finally:
        for task in tasks:
            task.cancel()
        worker.stop()
        controller.stop()
        monitor.stop()
        view.stop()
        orders.close()
        await redis.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m opslab.shop", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--kubeconfig", help="the kubeconfig to watch the cluster with")
    parser.add_argument("--in-cluster", action="store_true", help="use the pod's service account (kind profile)")
    parser.add_argument("--kafka", required=True, help="bootstrap servers, host:port")
    parser.add_argument(
        "--redis",
        default=os.environ.get("OPSLAB_REDIS_URL"),
        help="redis://[:password@]host:port/db (default: $OPSLAB_REDIS_URL: keeps a password off the command line)",
    )
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--log-dir", required=True)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--baseline-rps", type=float, default=5.0)
    parser.add_argument(
        "--poison-order-rate", type=float, default=0.0, help="share (0-1) of order events published broken"
    )
    args = parser.parse_args(argv)
    if not 0 <= args.poison_order_rate <= 1:
        parser.error(f"--poison-order-rate {args.poison_order_rate} is outside 0..1")
    if not args.kubeconfig and not args.in_cluster:
        parser.error("give --kubeconfig FILE or --in-cluster")
    if not args.redis:
        parser.error("give --redis URL or set OPSLAB_REDIS_URL")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the baseline traffic's own requests
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
