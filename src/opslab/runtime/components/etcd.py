"""etcd: the Kubernetes API server's storage (one member on 127.0.0.1).

Its client and peer ports serve TLS and require a client certificate from etcd's own CA, which
signed only etcd's certificate and the API server's etcd client certificate: nothing else on the
machine can read the cluster's objects around the API server's RBAC. Metrics and /health are served
on a separate plain-HTTP port (no keys or values there), for Prometheus and the readiness probe.
"""

from __future__ import annotations

from opslab.primitives.readiness import ProbeResult
from opslab.runtime.component import Component, http_probe


class Etcd(Component):
    name = "etcd"
    summary = "etcd, the cluster's key-value store"
    ready_timeout = 30.0

    @property
    def ports(self) -> dict[str, int]:
        p = self.ctx.ports
        return {"client": p.etcd, "peer": p.etcd_peer, "metrics": p.etcd_metrics}

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.ctx.ports.etcd}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ctx.ports.etcd_metrics}"

    def prepare(self) -> None:
        self.ctx.pki.ensure()
        data = self.ctx.data_dir("etcd")
        data.mkdir(parents=True, exist_ok=True)
        data.chmod(0o700)

    def command(self) -> list[str]:
        pki = self.ctx.pki
        peer = f"https://127.0.0.1:{self.ctx.ports.etcd_peer}"
        return [
            str(self.ctx.toolchain.require("etcd")),
            "--name=opslab",
            f"--data-dir={self.ctx.data_dir('etcd')}",
            f"--listen-client-urls={self.url}",
            f"--advertise-client-urls={self.url}",
            f"--listen-metrics-urls={self.metrics_url}",
            f"--cert-file={pki.cert('etcd')}",
            f"--key-file={pki.key('etcd')}",
            f"--trusted-ca-file={pki.etcd_ca_cert}",
            "--client-cert-auth=true",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--peer-cert-file={pki.cert('etcd')}",
            f"--peer-key-file={pki.key('etcd')}",
            f"--peer-trusted-ca-file={pki.etcd_ca_cert}",
            "--peer-client-cert-auth=true",
            f"--initial-cluster=opslab={peer}",
            "--initial-cluster-state=new",
            "--auto-compaction-mode=periodic",
            "--auto-compaction-retention=10m",
            "--quota-backend-bytes=2147483648",
            "--snapshot-count=10000",
            "--log-level=warn",
        ]

    def probe(self) -> ProbeResult:
        return http_probe(self.ctx.http(), f"{self.metrics_url}/health", expect='"health":"true"')
