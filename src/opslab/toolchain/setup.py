"""`opslab setup`: make every component available, building only what is missing or corrupt."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from opslab.primitives.errors import ConfigError, ToolchainError
from opslab.toolchain.builders import BUILDERS, BuildContext
from opslab.toolchain.catalog import Component, Source, components
from opslab.toolchain.resolve import Resolved, Toolchain

KEEP_LOCAL_BUILDS = 3
"""Builds of opslab's own Go modules kept besides the current one (each source edit is a version)."""


@dataclass(frozen=True)
class StepResult:
    """What setup did for one component."""

    component: str
    action: str  # "ready" (nothing to do) or "built"
    seconds: float
    detail: str


class SetupObserver(Protocol):
    """Receives setup's progress (the CLI prints it; tests record it)."""

    def started(self, component: Component, reason: str) -> None: ...

    def progress(self, component: Component, text: str) -> None: ...

    def finished(self, result: StepResult) -> None: ...


class SilentObserver:
    def started(self, component: Component, reason: str) -> None:
        pass

    def progress(self, component: Component, text: str) -> None:
        pass

    def finished(self, result: StepResult) -> None:
        pass


def _found(toolchain: Toolchain, component: Component) -> list[Resolved] | None:
    """The component's tools, each from an override, PATH or the cache; None if one is missing.

    An alternative tool (a terraform for OpenTofu) is preferred at run time but does not spare the
    build: OpenTofu is built on every machine, so the tests prove the path a machine without
    terraform takes."""
    found = []
    for tool in component.tools:
        resolved = toolchain.resolve(tool.name)
        if resolved is None:
            return None
        found.append(resolved)
    return found


def missing_components(toolchain: Toolchain) -> list[str]:
    """The components with at least one tool that resolves nowhere (quick check, no hashing)."""
    return [c.name for c in components(toolchain.versions) if _found(toolchain, c) is None]


def run_setup(
    toolchain: Toolchain,
    root: Path,
    log_dir: Path,
    observer: SetupObserver | None = None,
    *,
    only: Iterable[str] | None = None,
    rebuild: bool = False,
) -> list[StepResult]:
    """Ensure each component (or those named in ``only``) is ready; return one result per component."""
    observer = observer or SilentObserver()
    catalog = list(components(toolchain.versions))
    if only:
        names = {c.name for c in catalog}
        wanted = list(only)
        unknown = [n for n in wanted if n not in names]
        if unknown:
            raise ConfigError(f"unknown component {unknown[0]!r}", fix=f"use one of: {', '.join(sorted(names))}")
        catalog = [c for c in catalog if c.name in wanted]
    results = []
    for component in catalog:
        results.append(_ensure(toolchain, component, root, log_dir, observer, rebuild=rebuild))
    return results


def _ensure(
    toolchain: Toolchain,
    component: Component,
    root: Path,
    log_dir: Path,
    observer: SetupObserver,
    *,
    rebuild: bool,
) -> StepResult:
    start = time.monotonic()
    entry = toolchain.entry(component)
    reason = "rebuild requested" if rebuild else ""
    if not rebuild:
        found = _found(toolchain, component)
        problem = entry.problem(deep=True) if found and any(r.source == "cache" for r in found) else None
        if found and problem is None:
            where = sorted({r.source for r in found})
            result = StepResult(component.name, "ready", time.monotonic() - start, f"from {', '.join(where)}")
            observer.finished(result)
            return result
        reason = problem or entry.problem() or "not built"
        if problem:
            entry.remove()
    observer.started(component, reason)
    log = log_dir / f"setup-{component.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    ctx = BuildContext(
        root=root,
        stage=entry.begin(),
        log=log,
        versions=toolchain.versions,
        progress=lambda text: observer.progress(component, text),
    )
    try:
        BUILDERS[component.source](component, ctx)
        entry.commit(time.monotonic() - start)
        if component.source == Source.LOCAL_GO:
            entry.prune_siblings(keep=KEEP_LOCAL_BUILDS)
    except BaseException:
        entry.discard_partial()  # a failed rebuild leaves the previous entry in place
        raise
    if _found(toolchain, component) is None:
        raise ToolchainError(f"{component.name} was built but its tools are not usable", fix=f"see {log}")
    result = StepResult(component.name, "built", time.monotonic() - start, reason)
    observer.finished(result)
    return result
