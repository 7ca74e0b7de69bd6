"""`opslab setup`: build or fetch every component the platform needs."""

from __future__ import annotations

import time

import click

from opslab.cli.context import load_settings, toolchain_for
from opslab.cli.output import StepLine, console, fmt_seconds, step
from opslab.toolchain.catalog import Component
from opslab.toolchain.setup import StepResult, run_setup


class SetupPrinter:
    """Prints one line per component, with live progress while one builds."""

    def __init__(self) -> None:
        self.line: StepLine | None = None

    def started(self, component: Component, reason: str) -> None:
        console.print(f"  → {component.name:<24} {'':>7}  {reason}: building {component.summary}, {component.version}")
        self.line = StepLine(f"    {component.name}").__enter__()

    def progress(self, component: Component, text: str) -> None:
        if self.line:
            self.line.update(text)

    def finished(self, result: StepResult) -> None:
        if self.line:
            self.line.__exit__(None, None, None)
            self.line = None
        step("✓", result.component, result.seconds, result.detail if result.action == "ready" else "built")

    def close(self) -> None:
        if self.line:
            self.line.__exit__(None, None, None)
            self.line = None


def do_setup(only: tuple[str, ...] = (), rebuild: bool = False) -> list[StepResult]:
    """Run setup with printed progress (also used by `opslab up` when something is missing)."""
    settings = load_settings()
    toolchain = toolchain_for(settings)
    console.print(f"opslab setup: toolchain cache {settings.paths.cache}")
    began = time.monotonic()
    printer = SetupPrinter()
    try:
        results = run_setup(
            toolchain, settings.paths.root, settings.paths.logs, printer, only=only or None, rebuild=rebuild
        )
    finally:
        printer.close()
    console.print(f"setup finished in {fmt_seconds(time.monotonic() - began)}")
    return results


@click.command()
@click.option("--only", multiple=True, metavar="COMPONENT", help="Only this component (repeatable).")
@click.option("--rebuild", is_flag=True, help="Rebuild even if the cache is sound.")
def setup(only: tuple[str, ...], rebuild: bool) -> None:
    """Build or fetch the toolchain (Kubernetes, etcd, KWOK, Kafka, Prometheus, ...).

    Each binary is taken from, in order: OPSLAB_BIN_<TOOL>, PATH (if the version is right),
    ~/.cache/opslab, or a build from source. A second run with everything cached takes seconds.
    """
    do_setup(only, rebuild)
