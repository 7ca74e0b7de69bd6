"""One settings object for the whole tool, loaded in layers.

defaults  <  opslab.toml in the repository root  <  OPSLAB_* environment variables  <  CLI flags

What a user sets: the node count (``[cluster] nodes``, ``OPSLAB_NODES``, ``--nodes``), each port
(``[ports] <name>``, ``OPSLAB_PORT_<NAME>``, for example ``OPSLAB_PORT_REDIS``), the share of poison
orders the shop publishes (``[shop] poison_order_rate``, ``OPSLAB_SHOP_POISON_ORDER_RATE``), and the
state and cache directories (``OPSLAB_STATE_DIR``, ``OPSLAB_CACHE_DIR``). A bad value stops the command before
anything starts, with a message naming the value, where it came from and what is allowed.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from opslab.primitives.errors import ConfigError

MAX_NODES = 500
Number = TypeVar("Number", int, float)


@dataclass(frozen=True)
class Ports:
    """TCP ports on 127.0.0.1. Nothing opslab starts listens on any other address."""

    etcd: int = 12379
    """etcd client port (also serves /metrics and /health)."""
    etcd_peer: int = 12380
    """etcd peer port (single member, but etcd always listens on one)."""
    etcd_metrics: int = 12381
    """etcd's /metrics and /health, plain HTTP (its client and peer ports need etcd's client certificates)."""
    apiserver: int = 16443
    """kube-apiserver, HTTPS."""
    controller_manager: int = 11257
    """kube-controller-manager secure port (/healthz, /metrics)."""
    scheduler: int = 11259
    """kube-scheduler secure port (/healthz, /metrics)."""
    kwok: int = 11247
    """KWOK controller (/healthz, /metrics)."""
    prometheus: int = 19090
    """Prometheus web UI and API."""
    alertmanager: int = 19093
    """Alertmanager web UI and API."""
    pushgateway: int = 19091
    """Prometheus Pushgateway: batch jobs (drift checks) push metrics here; Prometheus scrapes it."""
    kafka: int = 19092
    """Kafka broker (PLAINTEXT listener)."""
    kafka_controller: int = 19094
    """Kafka KRaft controller listener."""
    redis: int = 16379
    """Redis."""
    sqs: int = 19324
    """ElasticMQ's SQS API (it serves no web UI or statistics port)."""
    shop: int = 18080
    """The shop simulator: its HTTP API (the gateway) and /metrics."""
    alert_bridge: int = 18088
    """The alert bridge: Alertmanager's webhook receiver that publishes alerts to Kafka."""
    drift_detector: int = 18089
    """The drift detector's /metrics (a periodic terraform plan of platform/terraform)."""
    opa: int = 18181
    """Open Policy Agent's REST API: the policy agent actions are checked against."""
    registry: int = 15000
    """The OCI registry (CNCF distribution), plain HTTP: push images here with crane."""
    git_server: int = 15001
    """The Git server (smart HTTP): push to http://127.0.0.1:PORT/NAME.git."""
    gitops: int = 15002
    """The GitOps reconciler's /healthz and /readyz."""
    gitops_metrics: int = 15003
    """The GitOps reconciler's /metrics (controller-runtime's reconcile metrics)."""
    thanos_sidecar: int = 15010
    """The Thanos sidecar's HTTP (/metrics, /-/ready): it uploads Prometheus' blocks to the bucket."""
    thanos_sidecar_grpc: int = 15011
    """The Thanos sidecar's StoreAPI (gRPC): Prometheus' recent data, for the querier."""
    thanos_store: int = 15012
    """The Thanos store gateway's HTTP (/metrics, /-/ready)."""
    thanos_store_grpc: int = 15013
    """The Thanos store gateway's StoreAPI (gRPC): the bucket's blocks, for the querier."""
    thanos_query: int = 15014
    """The Thanos querier: Prometheus' HTTP API and UI over live and long-term data."""
    thanos_query_grpc: int = 15015
    """The Thanos querier's own StoreAPI (gRPC)."""
    thanos_compact: int = 15016
    """The Thanos compactor's HTTP (/metrics, /-/ready)."""

    def items(self) -> list[tuple[str, int]]:
        return [(f.name, getattr(self, f.name)) for f in dataclasses.fields(self)]


@dataclass(frozen=True)
class Cluster:
    """The simulated Kubernetes cluster."""

    nodes: int = 3
    """Number of KWOK worker nodes, spread round-robin over the zones."""
    zones: tuple[str, ...] = ("zone-a", "zone-b", "zone-c")
    """Values of topology.kubernetes.io/zone given to the nodes."""
    tainted_nodes: int = 1
    """How many nodes (the last ones) carry the taint opslab.dev/dedicated=batch:NoSchedule."""
    eviction_seconds: int = 15
    """Default tolerationSeconds for not-ready/unreachable: how fast pods leave a failed node."""


@dataclass(frozen=True)
class Shop:
    """The shop simulator."""

    poison_order_rate: float = 0.0
    """Share (0-1) of the order events checkout publishes to topic orders broken (poison orders, for
    the event pipeline lab); a poison-orders Fault adds to it while it is active."""


@dataclass(frozen=True)
class Paths:
    """Where opslab reads and writes."""

    root: Path
    """The opslab repository (holds platform/ and labs/)."""
    state: Path
    """Per-checkout runtime state: kubeconfig, certificates, data, logs, runs (default root/.opslab)."""
    cache: Path
    """Built and fetched binaries, shared by checkouts (default ~/.cache/opslab)."""

    @property
    def platform(self) -> Path:
        return self.root / "platform"

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    @property
    def env_file(self) -> Path:
        return self.state / "env"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def runs(self) -> Path:
        return self.state / "runs"

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def data(self) -> Path:
        return self.state / "data"

    @property
    def config(self) -> Path:
        return self.state / "config"


@dataclass(frozen=True)
class Settings:
    """Everything configurable, grouped."""

    paths: Paths
    ports: Ports = field(default_factory=Ports)
    cluster: Cluster = field(default_factory=Cluster)
    shop: Shop = field(default_factory=Shop)


def find_root(start: Path | None = None) -> Path:
    """The opslab checkout: OPSLAB_ROOT, else the nearest parent holding platform/versions.toml."""
    if env := os.environ.get("OPSLAB_ROOT"):
        root = Path(env).expanduser().resolve()
        if not (root / "platform" / "versions.toml").is_file():
            raise ConfigError(
                f"OPSLAB_ROOT={env} is not an opslab checkout (no platform/versions.toml)",
                fix="point it at the directory you cloned, or unset it",
            )
        return root
    candidates = [start or Path.cwd(), Path(__file__).resolve()]
    for origin in candidates:
        for parent in [origin, *origin.parents]:
            if (parent / "platform" / "versions.toml").is_file():
                return parent
    raise ConfigError(
        "cannot find the opslab checkout (no platform/versions.toml here or above)",
        fix="run opslab from inside the repository you cloned, or set OPSLAB_ROOT",
    )


def _checked(
    value: Any, source: str, convert: Callable[[Any], Number], low: Number, high: Number, *, what: str, fix: str,
    range_fix: str | None = None,
) -> Number:  # fmt: skip
    """``value`` converted and within low..high, or a ConfigError naming ``source``."""
    try:
        number = convert(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}={value!r} is not {what}", fix=fix) from None
    if not low <= number <= high:
        raise ConfigError(f"{source}={number} is out of range", fix=range_fix or fix)
    return number


def _port(value: Any, source: str) -> int:
    return _checked(
        value, source, int, 1024, 65535, what="a port number", fix="use an integer from 1024 to 65535",
        range_fix="use a port from 1024 to 65535",
    )  # fmt: skip


def _nodes(value: Any, source: str) -> int:
    return _checked(
        value, source, int, 1, MAX_NODES, what="a number of nodes", fix=f"use an integer from 1 to {MAX_NODES}",
        range_fix=f"use 1 to {MAX_NODES} nodes",
    )  # fmt: skip


def _share(value: Any, source: str) -> float:
    return _checked(value, source, float, 0.0, 1.0, what="a number", fix="use a share from 0 to 1, e.g. 0.05")


def _read_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc})", fix="fix or delete the file") from None


def load(
    overrides: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    root: Path | None = None,
) -> Settings:
    """Build the settings from defaults, opslab.toml, OPSLAB_* variables and ``overrides``.

    ``overrides`` holds CLI flags: ``nodes``, ``port_<name>``, ``state_dir``, ``cache_dir``.
    """
    env = os.environ if environ is None else environ
    flags = dict(overrides or {})
    root = root or find_root()
    filed = _read_file(root / "opslab.toml")

    known_sections = {
        "ports": {name for name, _ in Ports().items()},
        "cluster": {"nodes"},
        "shop": {"poison_order_rate"},
    }
    for section, entries in filed.items():
        if section not in known_sections:
            raise ConfigError(
                f"{root / 'opslab.toml'}: unknown section [{section}]",
                fix=f"use one of {', '.join(sorted(known_sections))}",
            )
        if not isinstance(entries, dict):
            raise ConfigError(
                f"{root / 'opslab.toml'}: {section} must be a [{section}] table", fix="see docs/reference.md"
            )
        unknown = set(entries) - known_sections[section]
        if unknown:
            raise ConfigError(
                f"{root / 'opslab.toml'}: unknown key {sorted(unknown)[0]!r} in [{section}]",
                fix=f"use {', '.join(sorted(known_sections[section]))}",
            )

    ports: dict[str, int] = {}
    port_names = {name for name, _ in Ports().items()}
    for name, value in filed.get("ports", {}).items():
        if name not in port_names:
            raise ConfigError(f"opslab.toml: unknown port {name!r}", fix=f"use one of {', '.join(sorted(port_names))}")
        ports[name] = _port(value, f"opslab.toml ports.{name}")
    for name in port_names:
        var = f"OPSLAB_PORT_{name.upper()}"
        if var in env:
            ports[name] = _port(env[var], var)
        if flags.get(f"port_{name}") is not None:
            ports[name] = _port(flags[f"port_{name}"], f"--port-{name.replace('_', '-')}")
    port_settings = Ports(**ports)
    seen: dict[int, str] = {}
    for name, port in port_settings.items():
        if port in seen:
            raise ConfigError(f"ports {seen[port]} and {name} are both set to {port}", fix="give each a different port")
        seen[port] = name

    cluster_file = filed.get("cluster", {})
    nodes = Cluster.nodes
    if "nodes" in cluster_file:
        nodes = _nodes(cluster_file["nodes"], "opslab.toml cluster.nodes")
    if "OPSLAB_NODES" in env:
        nodes = _nodes(env["OPSLAB_NODES"], "OPSLAB_NODES")
    if flags.get("nodes") is not None:
        nodes = _nodes(flags["nodes"], "--nodes")
    cluster = Cluster(nodes=nodes)

    poison = Shop.poison_order_rate
    if "poison_order_rate" in filed.get("shop", {}):
        poison = _share(filed["shop"]["poison_order_rate"], "opslab.toml shop.poison_order_rate")
    if "OPSLAB_SHOP_POISON_ORDER_RATE" in env:
        poison = _share(env["OPSLAB_SHOP_POISON_ORDER_RATE"], "OPSLAB_SHOP_POISON_ORDER_RATE")
    shop = Shop(poison_order_rate=poison)

    state = Path(flags.get("state_dir") or env.get("OPSLAB_STATE_DIR") or root / ".opslab")
    cache_default = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "opslab"
    cache = Path(flags.get("cache_dir") or env.get("OPSLAB_CACHE_DIR") or cache_default)
    paths = Paths(root=root, state=state.expanduser().resolve(), cache=cache.expanduser().resolve())
    return Settings(paths=paths, ports=port_settings, cluster=cluster, shop=shop)
