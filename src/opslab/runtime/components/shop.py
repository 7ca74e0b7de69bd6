"""The shop simulator and the alert bridge: opslab's own Python services, run like the rest.

The runtime only knows how to start and probe them; their code lives in opslab.shop and
opslab.alerting (a layer above), and runs as `python -m ...` in opslab's own interpreter.
"""

from __future__ import annotations

import sys

from opslab.primitives.readiness import ProbeResult
from opslab.runtime import redis_auth
from opslab.runtime.component import Component, http_probe

SHOP_SEED = 1729


class Shop(Component):
    name = "shop"
    summary = "the shop simulator (gateway API, orders-worker, fault controller)"
    ready_timeout = 60.0

    @property
    def ports(self) -> dict[str, int]:
        return {"http": self.ctx.ports.shop}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ctx.ports.shop}"

    def prepare(self) -> None:
        (self.ctx.paths.logs / "shop").mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        p = self.ctx.ports
        return [
            sys.executable,
            "-m",
            "opslab.shop",
            f"--port={p.shop}",
            f"--kubeconfig={self.ctx.kubeconfig_for('shop')}",
            f"--kafka=127.0.0.1:{p.kafka}",
            f"--state-dir={self.ctx.paths.state}",
            f"--log-dir={self.ctx.paths.logs / 'shop'}",
            f"--seed={SHOP_SEED}",
            f"--poison-order-rate={self.ctx.settings.shop.poison_order_rate}",
        ]

    def environment(self) -> dict[str, str]:
        # Redis's URL carries its password: in the environment, never on the command line.
        return {"PROMETHEUS_DISABLE_CREATED_SERIES": "True", "OPSLAB_REDIS_URL": redis_auth.url(self.ctx.settings)}

    def probe(self) -> ProbeResult:
        return http_probe(self.ctx.http(), f"{self.url}/healthz")


class AlertBridge(Component):
    name = "alert-bridge"
    summary = "Alertmanager webhook receiver publishing alerts to Kafka topic alerts"
    ready_timeout = 30.0

    @property
    def ports(self) -> dict[str, int]:
        return {"http": self.ctx.ports.alert_bridge}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ctx.ports.alert_bridge}"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "opslab.alerting",
            f"--port={self.ctx.ports.alert_bridge}",
            f"--kafka=127.0.0.1:{self.ctx.ports.kafka}",
            # (the state directory in the command line lets `down` find a stray bridge)
            f"--state-marker={self.ctx.paths.config}/",
        ]

    def environment(self) -> dict[str, str]:
        return {"PROMETHEUS_DISABLE_CREATED_SERIES": "True"}

    def probe(self) -> ProbeResult:
        return http_probe(self.ctx.http(), f"{self.url}/healthz")


class DriftDetector(Component):
    name = "drift-detector"
    summary = "periodic terraform plan of platform/terraform, exported as opslab_terraform_drift"
    ready_timeout = 30.0

    @property
    def ports(self) -> dict[str, int]:
        return {"http": self.ctx.ports.drift_detector}

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "opslab.drift",
            f"--port={self.ctx.ports.drift_detector}",
            f"--state-dir={self.ctx.paths.state}",
            f"--state-marker={self.ctx.paths.config}/",
        ]

    def environment(self) -> dict[str, str]:
        return {"PROMETHEUS_DISABLE_CREATED_SERIES": "True"}

    def probe(self) -> ProbeResult:
        return http_probe(self.ctx.http(), f"http://127.0.0.1:{self.ctx.ports.drift_detector}/metrics")
