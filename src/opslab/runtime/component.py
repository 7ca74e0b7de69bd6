"""The Component contract: every real process of the platform is one.

A component knows how to prepare its files, the command that runs it, which ports it listens on,
and how to probe its readiness. Starting, stopping and restarting are the supervisor's job, so a
component never forks anything itself.
"""

from __future__ import annotations

import ssl
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import httpx

from opslab.primitives.readiness import ProbeResult
from opslab.runtime.pki import Pki
from opslab.settings import Paths, Ports, Settings
from opslab.toolchain.resolve import Toolchain


@dataclass
class RuntimeContext:
    """What every component may use: settings, the toolchain and the certificates."""

    settings: Settings
    toolchain: Toolchain

    @property
    def paths(self) -> Paths:
        return self.settings.paths

    @property
    def ports(self) -> Ports:
        return self.settings.ports

    @cached_property
    def pki(self) -> Pki:
        return Pki(self.settings.paths.pki)

    @property
    def apiserver_url(self) -> str:
        return f"https://127.0.0.1:{self.settings.ports.apiserver}"

    def kubeconfig_for(self, client: str) -> Path:
        """The kubeconfig a component uses (the admin one is .opslab/kubeconfig)."""
        if client == "admin":
            return self.settings.paths.kubeconfig
        return self.settings.paths.config / f"{client}.kubeconfig"

    def data_dir(self, name: str) -> Path:
        return self.settings.paths.data / name

    def config_file(self, name: str) -> Path:
        return self.settings.paths.config / name

    def log_file(self, name: str) -> Path:
        return self.settings.paths.logs / f"{name}.log"

    def http(self, *, client_cert: str | None = None, verify: bool = True, timeout: float = 3.0) -> httpx.Client:
        """An HTTP client for probing a component; TLS against opslab's CA, optionally with a client cert."""
        if not verify:
            return httpx.Client(verify=False, timeout=timeout)
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        if client_cert:
            context.load_cert_chain(str(self.pki.cert(client_cert)), str(self.pki.key(client_cert)))
        return httpx.Client(verify=context, timeout=timeout)


class Component(ABC):
    """A real process of the platform."""

    name: str
    """Unique, lower-case; also the supervisor program name and the log file name."""
    summary: str = ""
    ready_timeout: float = 60.0
    stop_seconds: int = 15

    def __init__(self, ctx: RuntimeContext) -> None:
        self.ctx = ctx

    @property
    @abstractmethod
    def ports(self) -> dict[str, int]:
        """What it listens on, by purpose (all on 127.0.0.1)."""

    @property
    def endpoint(self) -> str:
        """The address a user connects to, for the status table."""
        return f"127.0.0.1:{next(iter(self.ports.values()))}"

    def prepare(self) -> None:  # noqa: B027 - optional hook
        """Write configuration and initialise data; must be idempotent."""

    @abstractmethod
    def command(self) -> list[str]:
        """The command line (absolute paths; it must mention the state directory)."""

    def environment(self) -> dict[str, str]:
        return {}

    def config_files(self) -> list[Path]:
        """Files the process reads at start; when one changes, `up` restarts it."""
        return []

    @abstractmethod
    def probe(self) -> ProbeResult:
        """One readiness observation."""

    @property
    def log(self) -> Path:
        return self.ctx.log_file(self.name)


def http_probe(client: httpx.Client, url: str, *, expect: str | None = None) -> ProbeResult:
    """GET ``url``: ready on 200 (and, if given, when ``expect`` is in the body)."""
    with client:
        response = client.get(url)
    if response.status_code != 200:
        return ProbeResult.failed(f"GET {url} answered {response.status_code}: {response.text[:120].strip()}")
    if expect is not None and expect not in response.text:
        return ProbeResult.failed(f"GET {url} answered {response.text[:120].strip()!r}")
    return ProbeResult.passed()
