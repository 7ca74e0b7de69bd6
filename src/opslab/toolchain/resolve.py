"""Finding each binary: environment override, then PATH (right version), then opslab's cache."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from opslab.primitives.errors import ConfigError, ToolchainError
from opslab.primitives.processes import run
from opslab.settings import Settings
from opslab.toolchain.cache import CacheEntry
from opslab.toolchain.catalog import Component, Tool, tool_index
from opslab.toolchain.versions import Versions, load_versions, parse_version, version_matches

Which = Callable[[str], str | None]
VersionOf = Callable[[Path, Tool], tuple[int, int, int] | None]


@dataclass(frozen=True)
class Resolved:
    """Where a tool was found, and how."""

    tool: str
    path: Path
    source: str  # "env", "path" or "cache"
    component: str


def version_of(path: Path, tool: Tool) -> tuple[int, int, int] | None:
    """Run ``path`` with the tool's version arguments and parse what it prints."""
    out = run([str(path), *tool.version_args], timeout=30)
    return parse_version(out.stdout + "\n" + out.stderr)


class Toolchain:
    """Resolves tools by name. The outside world (environment, PATH, version probe) is injectable."""

    def __init__(
        self,
        versions: Versions,
        cache_root: Path,
        *,
        environ: Mapping[str, str] | None = None,
        which: Which = shutil.which,
        probe_version: VersionOf = version_of,
    ) -> None:
        self.versions = versions
        self.cache_root = cache_root
        self.environ = os.environ if environ is None else environ
        self.which = which
        self.probe_version = probe_version
        self.index = tool_index(versions)

    def component(self, tool: str) -> Component:
        try:
            return self.index[tool]
        except KeyError:
            known = ", ".join(sorted(self.index))
            raise ConfigError(f"unknown tool {tool!r}", fix=f"use one of: {known}") from None

    def entry(self, component: Component) -> CacheEntry:
        return CacheEntry(self.cache_root, component.name, component.cache_key)

    def _tool(self, name: str) -> tuple[Component, Tool]:
        component = self.component(name)
        return component, next(t for t in component.tools if t.name == name)

    def resolve(self, name: str) -> Resolved | None:
        """Find ``name``; None means it must be built (``opslab setup``)."""
        component, tool = self._tool(name)
        override = self.environ.get(tool.env_var)
        if override:
            path = Path(override).expanduser()
            if not (path.is_file() and os.access(path, os.X_OK)):
                raise ConfigError(
                    f"{tool.env_var}={override} is not an executable file",
                    fix=f"point it at a {name} binary or unset it",
                )
            found = self.probe_version(path, tool)
            if not version_matches(found, tool.pin or component.version, minimum=tool.minimum):
                raise ConfigError(
                    f"{tool.env_var}={override} is version {_fmt(found)}, opslab pins {tool.pin or component.version}",
                    fix=f"point it at {name} {component.version} or unset it",
                )
            return Resolved(name, path, "env", component.name)
        if tool.on_path:
            on_path = self.which(name)
            if on_path:
                found = self.probe_version(Path(on_path), tool)
                if version_matches(found, tool.pin or component.version, minimum=tool.minimum):
                    return Resolved(name, Path(on_path), "path", component.name)
        entry = self.entry(component)
        cached = entry.bin / name
        if cached.is_file() and entry.problem() is None:
            return Resolved(name, cached, "cache", component.name)
        return None

    def require(self, name: str) -> Path:
        """The path of ``name``, or a ToolchainError telling the user to run setup."""
        found = self.resolve(name)
        if found is None:
            raise ToolchainError(f"{name} is not built yet", fix="run `make up` or `opslab setup`")
        return found.path

    def alternative(self, component_name: str) -> Resolved | None:
        """The component's alternative tool, if it is available (env override or PATH, right version)."""
        component = next((c for c in self.index.values() if c.name == component_name), None)
        if component is None or component.alternative is None:
            return None
        tool = component.alternative
        candidate = self.environ.get(tool.env_var) or self.which(tool.name)
        if not candidate:
            return None
        found = self.probe_version(Path(candidate), tool)
        if version_matches(found, tool.pin or component.version, minimum=tool.minimum):
            source = "env" if self.environ.get(tool.env_var) else "path"
            return Resolved(tool.name, Path(candidate), source, component.name)
        return None

    def terraform_cli(self) -> Path:
        return terraform_cli(self)

    def provider_mirror(self) -> Path:
        """The filesystem mirror of Terraform providers built by setup."""
        return self.entry(self.index["terraform-provider-kubernetes"]).path / "mirror"

    def terraform_cli_config(self) -> str:
        """A Terraform/OpenTofu CLI configuration (TF_CLI_CONFIG_FILE) that installs providers only
        from the mirror built by setup: nothing is fetched from a registry."""
        return (
            "# Generated by opslab: providers come only from the local mirror built by `opslab setup`.\n"
            "provider_installation {\n"
            "  filesystem_mirror {\n"
            f'    path    = "{self.provider_mirror()}"\n'
            '    include = ["registry.terraform.io/*/*", "registry.opentofu.org/*/*"]\n'
            "  }\n"
            "}\n"
            "disable_checkpoint = true\n"
        )

    def kafka_home(self) -> Path:
        """The cached Kafka distribution (libs/ and bin/)."""
        return self.entry(self.index["kafka-storage"]).path

    def elasticmq_home(self) -> Path:
        """The cached ElasticMQ server (libs/ and bin/)."""
        return self.entry(self.index["elasticmq-server"]).path


def toolchain_for(settings: Settings) -> Toolchain:
    """The toolchain of ``settings``' checkout: its pinned versions, in opslab's cache."""
    return Toolchain(load_versions(settings.paths.platform / "versions.toml"), settings.paths.cache)


def _fmt(version: tuple[int, int, int] | None) -> str:
    return "unknown" if version is None else ".".join(map(str, version))


def terraform_cli(toolchain: Toolchain) -> Path:
    """terraform >= 1.6 (OPSLAB_BIN_TERRAFORM, then PATH), else OpenTofu (``tofu``)."""
    alternative = toolchain.alternative("opentofu")
    return alternative.path if alternative else toolchain.require("tofu")
