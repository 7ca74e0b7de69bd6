"""Prometheus Pushgateway: where short-lived jobs (a drift check run from cron or a pipeline) push
their last result, for Prometheus to scrape (job "pushgateway", honor_labels keeps the pushed job).

Its admin API (wiping every group at once) and lifecycle endpoint (shutdown over HTTP) stay off;
a job replaces or deletes its own group as usual. Pushed groups are kept in a file under the data
directory, so a `down` and `up` keep the last drift result.
"""

from __future__ import annotations

from opslab.primitives.readiness import ProbeResult
from opslab.runtime.component import Component, http_probe


class Pushgateway(Component):
    name = "pushgateway"
    summary = "Prometheus Pushgateway (batch jobs push results here)"
    ready_timeout = 30.0

    @property
    def ports(self) -> dict[str, int]:
        return {"http": self.ctx.ports.pushgateway}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ctx.ports.pushgateway}"

    def prepare(self) -> None:
        self.ctx.data_dir("pushgateway").mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        return [
            str(self.ctx.toolchain.require("prometheus-pushgateway")),
            f"--web.listen-address=127.0.0.1:{self.ctx.ports.pushgateway}",
            f"--persistence.file={self.ctx.data_dir('pushgateway') / 'pushed.metrics'}",
            "--persistence.interval=30s",
            "--log.level=warn",
        ]

    def probe(self) -> ProbeResult:
        return http_probe(self.ctx.http(), f"{self.url}/-/ready")
