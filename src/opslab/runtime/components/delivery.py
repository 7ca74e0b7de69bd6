"""Delivery: where lab 8's GitOps loop runs. A Git server to push to, an OCI registry to push
images to, and the GitOps reconciler that applies what Git says (Flux's GitRepository and
Kustomization APIs; see docs/gitops.md).

- git-server  `opslab-gitops git-server`: bare repositories over smart HTTP; a push creates one.
- registry    CNCF distribution, a file-system store, delete enabled (a pipeline may retag).
- gitops      `opslab-gitops` as user opslab:gitops, which applies nothing as itself: a
              Kustomization acts as a service account of its namespace (gitops-deployer unless it
              names one), in namespaces that opt in (platform/k8s/bootstrap/gitops.yaml). Flux's
              CRDs are applied by `up`'s bootstrap, as the admin. It also runs the image runtime:
              pods labelled opslab.dev/runtime=registry run only images the registry holds.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from opslab.primitives.files import write_atomic
from opslab.primitives.readiness import ProbeResult
from opslab.runtime.component import Component, http_probe

DEFAULT_SERVICE_ACCOUNT = "gitops-deployer"
"""Who a Kustomization that names no serviceAccountName applies as, in its own namespace."""


def flux_crds(component: Component) -> Path:
    """Flux's GitRepository and Kustomization CRDs, shipped next to opslab-gitops by `opslab setup`."""
    return component.ctx.toolchain.require("opslab-gitops").parent.parent / "crds"


class GitServer(Component):
    name = "git-server"
    summary = "Git over HTTP (push to http://127.0.0.1:PORT/NAME.git)"
    ready_timeout = 30.0

    @property
    def ports(self) -> dict[str, int]:
        return {"http": self.ctx.ports.git_server}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ctx.ports.git_server}"

    @property
    def repositories(self) -> Path:
        return self.ctx.data_dir("git")

    def prepare(self) -> None:
        self.repositories.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        return [
            str(self.ctx.toolchain.require("opslab-gitops")),
            "git-server",
            f"--dir={self.repositories}",
            f"--addr=127.0.0.1:{self.ctx.ports.git_server}",
        ]

    def probe(self) -> ProbeResult:
        # "/" is no repository: the server's own path check answers it (git and its log are not
        # involved), which shows it is up and checking paths.
        with self.ctx.http() as client:
            response = client.get(f"{self.url}/")
        if response.status_code != 404 or "not a repository path" not in response.text:
            return ProbeResult.failed(f"GET {self.url}/ answered {response.status_code}: {response.text[:80]!r}")
        return ProbeResult.passed()


class ImageRegistry(Component):
    name = "registry"
    summary = "OCI registry (CNCF distribution; crane pushes images here)"
    ready_timeout = 30.0

    @property
    def ports(self) -> dict[str, int]:
        return {"http": self.ctx.ports.registry}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ctx.ports.registry}"

    @property
    def config(self) -> Path:
        return self.ctx.config_file("registry.yml")

    def config_files(self) -> list[Path]:
        return [self.config]

    def prepare(self) -> None:
        store = self.ctx.data_dir("registry")
        store.mkdir(parents=True, exist_ok=True)
        config = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(store)}, "delete": {"enabled": True}},
            "http": {"addr": f"127.0.0.1:{self.ctx.ports.registry}"},
        }
        write_atomic(self.config, yaml.safe_dump(config, sort_keys=False))

    def command(self) -> list[str]:
        return [str(self.ctx.toolchain.require("registry")), "serve", str(self.config)]

    def probe(self) -> ProbeResult:
        return http_probe(self.ctx.http(), f"{self.url}/v2/")


class GitOps(Component):
    name = "gitops"
    summary = "GitOps reconciler (Flux's GitRepository and Kustomization APIs)"
    ready_timeout = 60.0

    @property
    def ports(self) -> dict[str, int]:
        return {"health": self.ctx.ports.gitops, "metrics": self.ctx.ports.gitops_metrics}

    @property
    def kubeconfig(self) -> Path:
        return self.ctx.kubeconfig_for("gitops")

    def prepare(self) -> None:
        # Its kubeconfig (client certificate of opslab:gitops) is written with the API server's.
        self.ctx.data_dir("gitops").mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        p = self.ctx.ports
        return [
            str(self.ctx.toolchain.require("opslab-gitops")),
            f"--data-dir={self.ctx.data_dir('gitops')}",
            f"--kubeconfig={self.kubeconfig}",
            f"--health-addr=127.0.0.1:{p.gitops}",
            f"--metrics-addr=127.0.0.1:{p.gitops_metrics}",
            f"--default-service-account={DEFAULT_SERVICE_ACCOUNT}",
            f"--image-registry=127.0.0.1:{p.registry}",
            "--no-cross-namespace-refs",
        ]

    def probe(self) -> ProbeResult:
        return http_probe(self.ctx.http(), f"http://127.0.0.1:{self.ctx.ports.gitops}/readyz")
