"""etcd: the Kubernetes API server's storage (one member, plain HTTP on 127.0.0.1 only)."""

from __future__ import annotations

from opslab.primitives.readiness import ProbeResult
from opslab.runtime.component import Component, http_probe


class Etcd(Component):
    name = "etcd"
    summary = "etcd, the cluster's key-value store"
    ready_timeout = 30.0

    @property
    def ports(self) -> dict[str, int]:
        return {"client": self.ctx.ports.etcd, "peer": self.ctx.ports.etcd_peer}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ctx.ports.etcd}"

    def prepare(self) -> None:
        data = self.ctx.data_dir("etcd")
        data.mkdir(parents=True, exist_ok=True)
        data.chmod(0o700)

    def command(self) -> list[str]:
        peer = f"http://127.0.0.1:{self.ctx.ports.etcd_peer}"
        return [
            str(self.ctx.toolchain.require("etcd")),
            "--name=opslab",
            f"--data-dir={self.ctx.data_dir('etcd')}",
            f"--listen-client-urls={self.url}",
            f"--advertise-client-urls={self.url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=opslab={peer}",
            "--initial-cluster-state=new",
            "--auto-compaction-mode=periodic",
            "--auto-compaction-retention=10m",
            "--quota-backend-bytes=2147483648",
            "--snapshot-count=10000",
            "--log-level=warn",
        ]

    def probe(self) -> ProbeResult:
        return http_probe(self.ctx.http(), f"{self.url}/health", expect='"health":"true"')
