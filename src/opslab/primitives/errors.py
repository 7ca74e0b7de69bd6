"""The exceptions opslab raises on purpose, grouped by what the caller should do.

    OpslabError                 a problem the user can fix; str() is one line: what and how to fix it
    ├── ConfigError             bad input (a flag, a setting, a file) caught before anything starts
    ├── PrerequisiteMissing     a program opslab needs is not installed (Go, Java 17, Maven, apt)
    ├── ToolchainError          building or fetching a component failed
    ├── PortInUse               a port opslab needs is held by another process
    ├── PlatformNotRunning      a command needs the platform and it is down
    └── ComponentFailed         a component did not become ready, or died

The CLI prints ``error: <message>`` for any of them and exits 1; nothing else prints a traceback
unless OPSLAB_DEBUG=1.
"""

from __future__ import annotations


class OpslabError(Exception):
    """A problem the user can fix. The message says what failed and, after "; ", how to fix it."""

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        self.message = message
        self.fix = fix
        super().__init__(f"{message}; {fix}" if fix else message)


class ConfigError(OpslabError):
    """Bad input: a flag, a setting or a file. Raised before anything is started or changed."""


class PrerequisiteMissing(OpslabError):
    """A program opslab needs (Go, Java 17, Maven, apt-get) is missing or too old."""


class ToolchainError(OpslabError):
    """Building or fetching a component failed. The message names the log with the details."""


class PortInUse(OpslabError):
    """A port opslab needs is already held by a process that is not opslab's."""


class PlatformNotRunning(OpslabError):
    """A command needs the running platform, and it is down."""

    def __init__(self, message: str = "the opslab platform is not running") -> None:
        super().__init__(message, fix="start it with `make up`")


class ComponentFailed(OpslabError):
    """A component did not become ready in time, or exited. The message names its log file."""
