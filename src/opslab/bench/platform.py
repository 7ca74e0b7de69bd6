"""`make bench-platform`: setup, up and down times, idle memory, and 1,000 pods on 100 nodes.

The benchmark runs its own platform (state under .opslab/bench/, ports shifted by 3000) so it
never disturbs the learner's. It prints the figures and records the medians in
docs/performance.md between the bench-platform markers.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
from kubernetes import client

from opslab import settings as settings_module
from opslab.bench.report import Measure, report_measures
from opslab.primitives.readiness import ProbeResult, wait_until
from opslab.runtime import kube
from opslab.runtime.endpoints import endpoint_environment
from opslab.runtime.lifecycle import Platform
from opslab.settings import Ports, Settings
from opslab.toolchain.resolve import toolchain_for

PORT_OFFSET = 3000
SCALE_NODES = 100
SCALE_PODS = 1000


def bench_settings(nodes: int) -> Settings:
    base = settings_module.load({"nodes": nodes})
    state = base.paths.state / "bench"
    ports = Ports(**{name: port + PORT_OFFSET for name, port in base.ports.items()})
    paths = dataclasses.replace(base.paths, state=state)
    return dataclasses.replace(base, ports=ports, paths=paths, cluster=dataclasses.replace(base.cluster, nodes=nodes))


def make_platform(settings: Settings) -> Platform:
    return Platform(settings, toolchain_for(settings))


@contextlib.contextmanager
def fresh_platform(settings: Settings) -> Iterator[dict[str, str]]:
    """A platform of the bench's own, from empty state; yields its endpoint environment, and stops
    and wipes it afterwards, however the bench ended."""
    platform = make_platform(settings)
    platform.down(purge=True)
    try:
        platform.up()
        yield endpoint_environment(settings)
    finally:
        platform.down(purge=True)


def timed(action: Callable[[], object]) -> float:
    began = time.monotonic()
    action()
    return time.monotonic() - began


def platform_rss(platform: Platform) -> int:
    """Sum of the resident memory of every platform process (and their children), in bytes."""
    total = 0
    seen: set[int] = set()
    for proc in platform.own_processes():
        try:
            for member in [proc, *proc.children(recursive=True)]:
                if member.pid not in seen:
                    seen.add(member.pid)
                    total += member.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def scale(platform: Platform) -> float:
    """Seconds from creating Deployments totalling SCALE_PODS replicas to all of them Running."""
    api = kube.api_client(platform.paths.kubeconfig)
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="bench")))
    per = 100
    began = time.monotonic()
    for i in range(SCALE_PODS // per):
        labels = {"app": f"load-{i}"}
        apps.create_namespaced_deployment(
            "bench",
            client.V1Deployment(
                metadata=client.V1ObjectMeta(name=f"load-{i}"),
                spec=client.V1DeploymentSpec(
                    replicas=per,
                    selector=client.V1LabelSelector(match_labels=labels),
                    template=client.V1PodTemplateSpec(
                        metadata=client.V1ObjectMeta(labels=labels),
                        spec=client.V1PodSpec(containers=[client.V1Container(name="app", image="opslab/load:1")]),
                    ),
                ),
            ),
        )

    def all_running() -> ProbeResult:
        pods = core.list_namespaced_pod("bench", field_selector="status.phase=Running", limit=2000).items
        return ProbeResult(len(pods) >= SCALE_PODS, f"{len(pods)}/{SCALE_PODS} Running")

    wait_until(all_running, what=f"{SCALE_PODS} pods Running", timeout=300, interval=1.0)
    return time.monotonic() - began


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="warm up/down cycles (default 3)")
    parser.add_argument("--scale-runs", type=int, default=2, help="1,000-pod runs (default 2)")
    parser.add_argument("--no-record", action="store_true", help="print only; leave docs/performance.md alone")
    args = parser.parse_args(argv)

    settings = bench_settings(nodes=3)
    memory = psutil.virtual_memory().total / 2**30
    print(f"bench-platform: {os.cpu_count()} cores, {memory:.0f} GiB, state {settings.paths.state}")

    platform = make_platform(settings)
    platform.down(purge=True)
    ups, downs, rss = [], [], []
    try:
        platform.up()  # first start: certificates, Kafka storage format, Terraform init
        platform.down()
        for run in range(args.runs):
            ups.append(timed(platform.up))
            time.sleep(20)
            rss.append(platform_rss(platform))
            downs.append(timed(platform.down))
            print(f"  run {run + 1}: up {ups[-1]:.1f} s, idle RSS {rss[-1] / 2**30:.2f} GiB, down {downs[-1]:.1f} s")
    finally:
        platform.down(purge=True)

    scale_times = []
    big = make_platform(bench_settings(nodes=SCALE_NODES))
    for run in range(args.scale_runs):
        try:
            big.up()
            scale_times.append(scale(big))
            print(f"  scale run {run + 1}: {SCALE_PODS} pods on {SCALE_NODES} nodes Running in {scale_times[-1]:.1f} s")
        finally:
            big.down(purge=True)

    med = statistics.median
    rows: list[Measure] = [
        (
            "warm `up` to all-ready",
            f"{med(ups):.1f} s",
            "<= 30 s",
            f"{len(ups)} runs: " + ", ".join(f"{u:.1f}" for u in ups),
        ),
        ("`down`", f"{med(downs):.1f} s", "-", ", ".join(f"{d:.1f}" for d in downs)),
        (
            "idle memory (sum of RSS)",
            f"{med(rss) / 2**30:.2f} GiB",
            "<= 3 GiB",
            ", ".join(f"{r / 2**30:.2f}" for r in rss),
        ),
        (
            f"{SCALE_PODS} pods Running on {SCALE_NODES} nodes",
            f"{med(scale_times):.1f} s",
            "<= 60 s",
            ", ".join(f"{s:.1f}" for s in scale_times),
        ),
    ]
    document = None if args.no_record else Path(settings.paths.root) / "docs" / "performance.md"
    report_measures(document, "bench-platform", "", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
