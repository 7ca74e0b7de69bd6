"""`opslab lab preview N`: a learner's rules and exporter in the platform's Prometheus, before grading.

A lab that declares ``[preview]`` in lab.toml (its rule files and the port its exporter listens
on) can be tried out against the live platform: the rule files are checked with promtool, copied
into Prometheus's lab rule directory and loaded, and the exporter's port becomes a scrape target
of job "labs". Nothing is half-applied: rules promtool refuses are never copied, and a reload
Prometheus refuses is undone. `--stop` removes both. Grading never uses these files: it runs a
Prometheus of its own.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx

from opslab.grading.labs import Lab
from opslab.primitives.errors import ConfigError
from opslab.primitives.files import write_atomic
from opslab.runtime.components.prometheus import LAB_JOB, LAB_RULES, LAB_TARGETS
from opslab.settings import Settings


@dataclass(frozen=True)
class Preview:
    """What `preview` put in place, for the learner to look at."""

    rules: list[Path]
    target: str
    """The exporter's address Prometheus scrapes; "" for a lab with rules only."""
    prometheus: str


def _files(lab: Lab, settings: Settings) -> tuple[Path, Path]:
    return settings.paths.config / LAB_RULES, settings.paths.config / LAB_TARGETS / f"preview-{lab.name}.json"


def _ours(lab: Lab, settings: Settings) -> list[Path]:
    rules, target = _files(lab, settings)
    return [*sorted(rules.glob(f"preview-{lab.name}-*")), target]


def _reload(settings: Settings) -> str:
    """ "" if Prometheus took its rules again, else why not (one line)."""
    url = f"http://127.0.0.1:{settings.ports.prometheus}/-/reload"
    try:
        response = httpx.post(url, timeout=30)
    except httpx.HTTPError as exc:
        raise ConfigError(f"Prometheus does not answer at {url} ({exc})", fix="start the platform: `make up`") from None
    return "" if response.status_code == 200 else response.text.strip().splitlines()[0][:300]


def start(lab: Lab, settings: Settings, promtool: Path, *, path: Path, port: int | None = None) -> Preview:
    """Load ``path``'s rule files and scrape its exporter on ``port`` (default: the lab's)."""
    if not lab.preview_rules:
        raise ConfigError(f"lab {lab.number} has nothing to preview", fix="only labs with rules and an exporter do")
    sources = [path / name for name in lab.preview_rules]
    missing = [s.name for s in sources if not s.is_file()]
    if missing:
        raise ConfigError(f"{path} has no {', '.join(missing)}", fix=f"is {path} your lab {lab.number} directory?")
    checked = subprocess.run(
        [str(promtool), "check", "rules", *map(str, sources)], capture_output=True, text=True, timeout=60, check=False
    )
    if checked.returncode != 0:
        detail = " | ".join(line.strip() for line in (checked.stderr or checked.stdout).splitlines() if line.strip())
        raise ConfigError(f"promtool refuses your rules: {detail[:400]}", fix="fix them; nothing was loaded")
    stop(lab, settings, reload=False)
    rules_dir, target = _files(lab, settings)
    rules_dir.mkdir(parents=True, exist_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    copies = [rules_dir / f"preview-{lab.name}-{s.name}" for s in sources]
    for source, copy in zip(sources, copies, strict=True):
        write_atomic(copy, source.read_text())
    scraped = port or lab.preview_port
    address = f"127.0.0.1:{scraped}" if scraped else ""  # a lab with rules only (lab 7) has no exporter
    if address:
        write_atomic(target, json.dumps([{"targets": [address], "labels": {"job": LAB_JOB, "preview": lab.name}}]))
    refused = _reload(settings)
    if refused:
        stop(lab, settings)
        raise ConfigError(f"Prometheus refused your rules: {refused}", fix="fix them; nothing stays loaded")
    return Preview(copies, address, f"http://127.0.0.1:{settings.ports.prometheus}")


def stop(lab: Lab, settings: Settings, *, reload: bool = True) -> list[Path]:
    """Remove the lab's preview rules and target (and reload Prometheus); return what was removed."""
    removed = [p for p in _ours(lab, settings) if p.is_file()]
    for item in removed:
        item.unlink()
    if removed and reload:
        _reload(settings)
    return removed
