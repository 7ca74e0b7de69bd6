"""Building the library objects a command needs from settings and flags."""

from __future__ import annotations

from typing import Any

from opslab import settings as settings_module
from opslab.runtime.lifecycle import Platform
from opslab.settings import Settings
from opslab.toolchain.resolve import toolchain_for


def load_settings(**flags: Any) -> Settings:
    return settings_module.load(flags)


def platform_for(settings: Settings) -> Platform:
    return Platform(settings, toolchain_for(settings))
