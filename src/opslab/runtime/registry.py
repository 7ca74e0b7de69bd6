"""The platform's components, by name, in start order."""

from __future__ import annotations

from collections.abc import Iterator

from opslab.primitives.errors import ConfigError
from opslab.runtime.component import Component, RuntimeContext
from opslab.runtime.components.alertmanager import Alertmanager
from opslab.runtime.components.delivery import GitOps, GitServer, ImageRegistry
from opslab.runtime.components.elasticmq import ElasticMQ
from opslab.runtime.components.etcd import Etcd
from opslab.runtime.components.kafka import Kafka
from opslab.runtime.components.kube import ApiServer, ControllerManager, Scheduler
from opslab.runtime.components.kwok import Kwok
from opslab.runtime.components.opa import Opa
from opslab.runtime.components.prometheus import Prometheus
from opslab.runtime.components.pushgateway import Pushgateway
from opslab.runtime.components.redis import Redis
from opslab.runtime.components.shop import AlertBridge, DriftDetector, Shop
from opslab.runtime.components.thanos import ThanosCompact, ThanosQuery, ThanosSidecar, ThanosStore

COMPONENT_TYPES: tuple[type[Component], ...] = (
    Etcd,
    ApiServer,
    ControllerManager,
    Scheduler,
    Kwok,
    Prometheus,
    Alertmanager,
    Pushgateway,
    ThanosSidecar,
    ThanosStore,
    ThanosQuery,
    ThanosCompact,
    Kafka,
    Redis,
    ElasticMQ,
    Opa,
    GitServer,
    ImageRegistry,
    GitOps,
    AlertBridge,
    Shop,
    DriftDetector,
)


class Registry:
    """Components by name; refuses two with the same name or the same port."""

    def __init__(self, ctx: RuntimeContext, types: tuple[type[Component], ...] = COMPONENT_TYPES) -> None:
        self.components: dict[str, Component] = {}
        owners: dict[int, str] = {}
        for kind in types:
            component = kind(ctx)
            if component.name in self.components:
                raise ValueError(f"two components are named {component.name!r}")
            for port in component.ports.values():
                if port in owners:
                    raise ConfigError(
                        f"{component.name} and {owners[port]} both want port {port}",
                        fix="give each a different port (OPSLAB_PORT_<NAME>)",
                    )
                owners[port] = component.name
            self.components[component.name] = component

    def __iter__(self) -> Iterator[Component]:
        return iter(self.components.values())

    def names(self) -> list[str]:
        return list(self.components)

    def get(self, name: str) -> Component:
        try:
            return self.components[name]
        except KeyError:
            raise ConfigError(f"unknown component {name!r}", fix=f"use one of: {', '.join(self.components)}") from None
