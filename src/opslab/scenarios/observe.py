"""Watching a scenario run: an SLI timeline from Prometheus and the alerts Alertmanager holds.

A background thread samples every few seconds; the rows become timeline.csv, the alerts
alerts.json (first and last time each was seen firing), and both feed the report's plots.
"""

from __future__ import annotations

import csv
import json
import math
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

SERIES = {
    "error_ratio": "shop:sli_error_ratio:rate25s",
    "slow_ratio": "shop:sli_slow_ratio:rate25s",
    "availability_burn": "shop:slo_availability_burn_rate:rate5m",
    "latency_burn": "shop:slo_latency_burn_rate:rate5m",
    "rps": "shop:sli_requests:rate25s",
}


@dataclass
class Sample:
    t: float
    service: str
    values: dict[str, float]


@dataclass
class SeenAlert:
    alertname: str
    labels: dict[str, str]
    first_seen: float
    last_seen: float
    severity: str = ""

    @property
    def key(self) -> str:
        return json.dumps(self.labels, sort_keys=True)


@dataclass
class Observation:
    started: float
    first_sample: float = 0.0
    """When alerts were first read: alerts seen then were already firing before the run."""
    samples: list[Sample] = field(default_factory=list)
    alerts: dict[str, SeenAlert] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def first_alert_after(self, t: float, name: str | None = None) -> SeenAlert | None:
        candidates = [
            a
            for a in self.alerts.values()
            if a.alertname != "Watchdog"
            and a.first_seen > self.first_sample
            and a.last_seen >= t
            and (name is None or a.alertname == name)
        ]
        return min(candidates, key=lambda a: max(a.first_seen, t), default=None)

    def peak(self, service: str, series: str, since: float, until: float) -> float:
        values = [s.values.get(series, 0.0) for s in self.samples if s.service == service and since <= s.t <= until]
        return max(values, default=0.0)

    def write(self, run_dir: Path) -> None:
        with (run_dir / "timeline.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["seconds", "service", *SERIES])
            for sample in self.samples:
                writer.writerow(
                    [round(sample.t - self.started, 1), sample.service]
                    + [round(sample.values.get(name, 0.0), 6) for name in SERIES]
                )
        alerts = [
            {
                **asdict(a),
                "first_seen_s": round(a.first_seen - self.started, 1),
                "last_seen_s": round(a.last_seen - self.started, 1),
            }
            for a in sorted(self.alerts.values(), key=lambda a: a.first_seen)
        ]
        (run_dir / "alerts.json").write_text(json.dumps(alerts, indent=1))


class Sampler:
    """Samples Prometheus and Alertmanager every ``interval`` seconds until stopped."""

    def __init__(self, prometheus: str, alertmanager: str, interval: float = 3.0) -> None:
        self.prometheus = prometheus
        self.alertmanager = alertmanager
        self.interval = interval
        self.observation = Observation(started=time.time())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._http = httpx.Client(timeout=5)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> Observation:
        self._stop.set()
        self._thread.join(timeout=15)
        self._http.close()
        return self.observation

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample(time.time())
            except Exception as exc:  # a restarting Prometheus must not end the observation
                self.observation.errors.append(f"{type(exc).__name__}: {exc}")
            self._stop.wait(self.interval)

    def _query(self, expr: str) -> list[dict[str, Any]]:
        response = self._http.get(f"{self.prometheus}/api/v1/query", params={"query": expr})
        response.raise_for_status()
        return list(response.json()["data"]["result"])

    def sample(self, now: float) -> None:
        by_service: dict[str, dict[str, float]] = {}
        for name, expr in SERIES.items():
            for row in self._query(expr):
                service = row["metric"].get("service", "")
                value = float(row["value"][1])
                by_service.setdefault(service, {})[name] = 0.0 if math.isnan(value) else value
        for service, values in by_service.items():
            self.observation.samples.append(Sample(now, service, values))
        response = self._http.get(f"{self.alertmanager}/api/v2/alerts", params={"active": "true"})
        response.raise_for_status()
        if not self.observation.first_sample:
            self.observation.first_sample = now
        for alert in response.json():
            labels = dict(alert["labels"])
            seen = SeenAlert(labels.get("alertname", ""), labels, now, now, labels.get("severity", ""))
            existing = self.observation.alerts.get(seen.key)
            if existing:
                existing.last_seen = now
            else:
                self.observation.alerts[seen.key] = seen
