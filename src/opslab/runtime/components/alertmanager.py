"""Alertmanager: receives alerts from Prometheus and routes them (config in platform/alertmanager/)."""

from __future__ import annotations

from opslab.primitives.readiness import ProbeResult
from opslab.runtime.component import Component, http_probe


class Alertmanager(Component):
    name = "alertmanager"
    summary = "Alertmanager"
    ready_timeout = 30.0

    @property
    def ports(self) -> dict[str, int]:
        return {"http": self.ctx.ports.alertmanager}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ctx.ports.alertmanager}"

    def prepare(self) -> None:
        self.ctx.data_dir("alertmanager").mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        return [
            str(self.ctx.toolchain.require("alertmanager")),
            f"--config.file={self.ctx.paths.platform / 'alertmanager' / 'alertmanager.yml'}",
            f"--storage.path={self.ctx.data_dir('alertmanager')}",
            f"--web.listen-address=127.0.0.1:{self.ctx.ports.alertmanager}",
            f"--web.external-url={self.url}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ]

    def probe(self) -> ProbeResult:
        return http_probe(self.ctx.http(), f"{self.url}/-/ready")
