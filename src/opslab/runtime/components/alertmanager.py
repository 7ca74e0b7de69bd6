"""Alertmanager: receives alerts from Prometheus and routes them (config in platform/alertmanager/)."""

from __future__ import annotations

from pathlib import Path

from opslab.primitives.files import write_atomic
from opslab.primitives.readiness import ProbeResult
from opslab.runtime import run_config
from opslab.runtime.component import Component, http_probe

BRIDGE_PLACEHOLDER = "http://127.0.0.1:ALERT_BRIDGE_PORT/alerts"


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

    @property
    def config_path(self) -> Path:
        return self.ctx.config_file("alertmanager.yml")

    def render(self) -> str:
        """platform/alertmanager/alertmanager.yml with this platform's alert bridge address filled in."""
        template = (self.ctx.paths.platform / "alertmanager" / "alertmanager.yml").read_text()
        url = f"http://127.0.0.1:{self.ctx.ports.alert_bridge}/alerts"
        return template.replace(BRIDGE_PLACEHOLDER, url)

    @property
    def base_path(self) -> Path:
        return self.ctx.config_file(run_config.BASE)

    def prepare(self) -> None:
        """Write the platform's configuration, and alertmanager.yml: it plus the routes of live grading
        runs (run_config adds and removes those while Alertmanager runs)."""
        self.ctx.data_dir("alertmanager").mkdir(parents=True, exist_ok=True)
        write_atomic(self.base_path, self.render())
        write_atomic(self.config_path, run_config.render_alertmanager(self.ctx.settings))

    def config_files(self) -> list[Path]:
        return [self.base_path]  # a grading run's route is reloaded, not a reason to restart

    def command(self) -> list[str]:
        return [
            str(self.ctx.toolchain.require("alertmanager")),
            f"--config.file={self.config_path}",
            f"--storage.path={self.ctx.data_dir('alertmanager')}",
            f"--web.listen-address=127.0.0.1:{self.ctx.ports.alertmanager}",
            f"--web.external-url={self.url}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ]

    def probe(self) -> ProbeResult:
        return http_probe(self.ctx.http(), f"{self.url}/-/ready")
