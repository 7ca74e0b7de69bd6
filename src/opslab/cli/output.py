"""Terminal output: step lines with timings, live progress for long steps, and tables."""

from __future__ import annotations

import sys
import threading
import time

from rich.console import Console

# emoji=False: text such as "<ns>:lock:<target>" in a hint is printed as written, not as a padlock
console = Console(highlight=False, emoji=False, soft_wrap=True, width=None if sys.stdout.isatty() else 140)


def fmt_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


class StepLine:
    """Shows one long-running step: a live line on a terminal, a line every 30 s otherwise."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.text = "starting"
        self.began = time.monotonic()
        self._stop = threading.Event()
        self._interactive = sys.stdout.isatty()
        self._status = console.status(self._render()) if self._interactive else None
        self._thread = threading.Thread(target=self._tick, daemon=True)

    def _render(self) -> str:
        return f"{self.label}: {self.text} ({fmt_seconds(time.monotonic() - self.began)})"

    def _tick(self) -> None:
        last_print = time.monotonic()
        while not self._stop.wait(1.0):
            if self._status is not None:
                self._status.update(self._render())
            elif time.monotonic() - last_print >= 30:
                console.print(f"  … {self._render()}")
                console.file.flush()
                last_print = time.monotonic()

    def __enter__(self) -> StepLine:
        if self._status is not None:
            self._status.start()
        self._thread.start()
        return self

    def update(self, text: str) -> None:
        self.text = text

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self._status is not None:
            self._status.stop()


def step(mark: str, name: str, seconds: float, detail: str) -> None:
    """One finished step: mark, name, time, detail."""
    console.print(f"  {mark} {name:<24} {fmt_seconds(seconds):>7}  {detail}")
    console.file.flush()
