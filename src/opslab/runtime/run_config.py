"""Configuration a grading run adds to the platform's Prometheus and Alertmanager, and removes.

A run that needs the real alerting path (lab 5: a scenario's alert must reach the learner's
webhook through Alertmanager) adds, under names that start with ``grading-<run>``:
- a rule file in Prometheus's lab rules directory and a scrape target file (job "labs");
- an Alertmanager route: alerts labelled ``opslab_run="<run>"`` go to the run's webhook, with a
  bearer token read from a file, and to nowhere else (the route does not continue).

Each change is applied and then proven by a reload; a reload the program refuses undoes the
change, so nothing is left half-applied. Alertmanager's configuration is the platform's own file
plus every run's route, rendered under a file lock, because two runs may change it at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

from opslab.primitives.errors import ConfigError
from opslab.primitives.files import write_atomic
from opslab.runtime.components.prometheus import LAB_JOB, LAB_RULES, LAB_TARGETS
from opslab.settings import Settings

ALERT_ROUTES = "alertmanager-routes"
"""Directory (under the config directory) of the runs' Alertmanager routes, one YAML file each."""
RUN_LABEL = "opslab_run"
"""The alert label that sends an alert to its run's route."""
BASE = "alertmanager.base.yml"
"""The platform's own rendered Alertmanager configuration (without any run's route)."""
PREFIX = "grading-"


def _lock_path(settings: Settings) -> Path:
    return settings.paths.config / ".run-config.lock"


@contextlib.contextmanager
def _locked(settings: Settings) -> Iterator[None]:
    path = _lock_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _reload(url: str, what: str) -> str:
    """ "" if the program took its configuration again, else why not (one line)."""
    try:
        response = httpx.post(f"{url}/-/reload", timeout=30)
    except httpx.HTTPError as exc:
        raise ConfigError(f"{what} does not answer at {url} ({exc})", fix="start the platform: `make up`") from None
    if response.status_code == 200:
        return ""
    return (response.text.strip().splitlines() or ["(no reason given)"])[0][:300]


def merge_routes(base: str, routes: list[dict[str, Any]]) -> str:
    """The platform's Alertmanager configuration ``base`` with each run's route put first."""
    config = yaml.safe_load(base)
    route = config.setdefault("route", {})
    route["routes"] = [item["route"] for item in routes] + list(route.get("routes") or [])
    config["receivers"] = list(config.get("receivers") or []) + [item["receiver"] for item in routes]
    return yaml.safe_dump(config, sort_keys=False)


def render_alertmanager(settings: Settings) -> str:
    """alertmanager.yml as it should be now: the base plus every run's route (sorted by name)."""
    base = (settings.paths.config / BASE).read_text()
    folder = settings.paths.config / ALERT_ROUTES
    routes = [yaml.safe_load(path.read_text()) for path in sorted(folder.glob("*.yml"))] if folder.is_dir() else []
    return merge_routes(base, routes)


def _apply_alertmanager(settings: Settings) -> str:
    write_atomic(settings.paths.config / "alertmanager.yml", render_alertmanager(settings))
    return _reload(f"http://127.0.0.1:{settings.ports.alertmanager}", "Alertmanager")


def add_webhook_route(settings: Settings, run_id: str, url: str, token_file: Path) -> None:
    """Route the alerts labelled ``opslab_run=<run_id>`` to ``url`` with the bearer token in ``token_file``.

    The run's alerts are grouped by alert name and target, sent after 1 s and again every 10 s
    while they change, resolved ones too.
    """
    name = f"{PREFIX}{run_id}"
    fragment = {
        "route": {
            "receiver": name,
            "matchers": [f'{RUN_LABEL} = "{run_id}"'],
            "group_by": ["alertname", "namespace", "deployment"],
            "group_wait": "1s",
            "group_interval": "10s",
            "repeat_interval": "1h",
            "continue": False,
        },
        "receiver": {
            "name": name,
            "webhook_configs": [
                {
                    "url": url,
                    "send_resolved": True,
                    "max_alerts": 0,
                    "http_config": {"authorization": {"type": "Bearer", "credentials_file": str(token_file)}},
                }
            ],
        },
    }
    path = settings.paths.config / ALERT_ROUTES / f"{name}.yml"
    with _locked(settings):
        write_atomic(path, yaml.safe_dump(fragment, sort_keys=False))
        refused = _apply_alertmanager(settings)
        if refused:
            path.unlink()
            _apply_alertmanager(settings)
            raise ConfigError(f"Alertmanager refused the route of run {run_id}: {refused}", fix="this is a bug")


def add_rules(settings: Settings, run_id: str, rules: dict[str, Any]) -> None:
    """Load the run's rule groups (a rule file's content) into Prometheus."""
    path = settings.paths.config / LAB_RULES / f"{PREFIX}{run_id}.yml"
    with _locked(settings):
        write_atomic(path, yaml.safe_dump(rules, sort_keys=False))
        refused = _reload(f"http://127.0.0.1:{settings.ports.prometheus}", "Prometheus")
        if refused:
            path.unlink()
            _reload(f"http://127.0.0.1:{settings.ports.prometheus}", "Prometheus")
            raise ConfigError(f"Prometheus refused the rules of run {run_id}: {refused}", fix="this is a bug")


def add_target(settings: Settings, run_id: str, address: str, labels: dict[str, str]) -> None:
    """Scrape ``address`` (host:port) as job "labs" with ``labels`` and the run's label; picked up within 5 s."""
    path = settings.paths.config / LAB_TARGETS / f"{PREFIX}{run_id}.json"
    target = {"targets": [address], "labels": {"job": LAB_JOB, RUN_LABEL: run_id, **labels}}
    write_atomic(path, json.dumps([target]))


def _files_of(settings: Settings, runs: set[str] | None) -> list[Path]:
    folders = [settings.paths.config / name for name in (ALERT_ROUTES, LAB_RULES, LAB_TARGETS)]
    found = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in folder.glob(f"{PREFIX}*"):
            run = path.name[len(PREFIX) :].split(".", 1)[0]
            if runs is None or run in runs:
                found.append(path)
    return found


def runs_with_config(settings: Settings) -> set[str]:
    """The runs that have configuration in Prometheus or Alertmanager."""
    return {path.name[len(PREFIX) :].split(".", 1)[0] for path in _files_of(settings, None)}


def remove(settings: Settings, runs: set[str] | None) -> list[str]:
    """Remove the given runs' rules, targets and routes (``None``: every run's); reload what changed."""
    with _locked(settings):
        found = _files_of(settings, runs)
        for path in found:
            path.unlink(missing_ok=True)
        folders = {path.parent.name for path in found}
        with contextlib.suppress(ConfigError):
            if ALERT_ROUTES in folders and (settings.paths.config / BASE).is_file():
                _apply_alertmanager(settings)
            if LAB_RULES in folders:
                _reload(f"http://127.0.0.1:{settings.ports.prometheus}", "Prometheus")
    return [f"{path.parent.name}/{path.name}" for path in found]
