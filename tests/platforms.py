"""Test platforms: the session's platform and any other one a test starts run under a temporary state
directory, with every port shifted by an offset, so they never touch the learner's own platform."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from opslab import settings as settings_module
from opslab.runtime.lifecycle import Platform
from opslab.settings import Ports, Settings
from opslab.toolchain.resolve import Toolchain
from opslab.toolchain.versions import load_versions

OWNER_FILE = "test-session-owner"
"""In a test platform's state directory: the pytest process that owns it (see isolation.owner_token)."""


def shifted_settings(state: Path, offset: int, nodes: int = 3) -> Settings:
    base = settings_module.load({"nodes": nodes, "state_dir": str(state)})
    ports = Ports(**{name: port + offset for name, port in base.ports.items()})
    return dataclasses.replace(base, ports=ports)


def make_platform(settings: Settings) -> Platform:
    versions = load_versions(settings.paths.platform / "versions.toml")
    return Platform(settings, Toolchain(versions, settings.paths.cache))
