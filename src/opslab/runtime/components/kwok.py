"""KWOK: simulates the kubelets of the worker nodes, so pods "run" without containers.

kwok manages only the nodes annotated kwok.x-k8s.io/node=fake (created by opslab's cluster code)
and drives node and pod status through the Stage files in platform/kwok/stages/.
"""

from __future__ import annotations

from pathlib import Path

from opslab.primitives.files import write_atomic
from opslab.primitives.readiness import ProbeResult
from opslab.runtime.component import Component, http_probe

NODE_ANNOTATION = "kwok.x-k8s.io/node"
POD_CIDR = "10.244.0.0/16"


class Kwok(Component):
    name = "kwok"
    summary = "KWOK, the simulated kubelets"
    ready_timeout = 30.0

    @property
    def ports(self) -> dict[str, int]:
        return {"http": self.ctx.ports.kwok}

    def prepare(self) -> None:
        stages = sorted((self.ctx.paths.platform / "kwok" / "stages").glob("*.yaml"))
        documents = [f"# from {s.relative_to(self.ctx.paths.root)}\n{s.read_text().strip()}\n" for s in stages]
        write_atomic(self.ctx.config_file("kwok-stages.yaml"), "---\n".join(documents))

    def config_files(self) -> list[Path]:
        return [self.ctx.config_file("kwok-stages.yaml")]

    def command(self) -> list[str]:
        return [
            str(self.ctx.toolchain.require("kwok")),
            f"--config={self.ctx.config_file('kwok-stages.yaml')}",
            f"--kubeconfig={self.ctx.kubeconfig_for('kwok')}",
            f"--manage-nodes-with-annotation-selector={NODE_ANNOTATION}=fake",
            f"--server-address=127.0.0.1:{self.ctx.ports.kwok}",
            "--node-lease-duration-seconds=40",
            f"--cidr={POD_CIDR}",
            "--node-ip=127.0.0.1",
        ]

    def probe(self) -> ProbeResult:
        return http_probe(self.ctx.http(), f"http://127.0.0.1:{self.ctx.ports.kwok}/healthz")
