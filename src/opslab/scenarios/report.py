"""The run report: plots of SLIs, error-budget burn and the fault window, in report.html."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from jinja2 import Environment, select_autoescape

from opslab.scenarios.observe import Observation

PANELS = (
    ("error_ratio", "Error ratio (5xx share, 25 s window)", None),
    ("slow_ratio", "Slow ratio (share over 250 ms, 25 s window)", None),
    ("availability_burn", "Availability error-budget burn rate (page threshold 14.4x)", 14.4),
    ("latency_burn", "Latency error-budget burn rate (page threshold 14.4x)", 14.4),
    ("rps", "Requests per second", None),
)

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>opslab scenario {{ s.name }}</title>
<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}
.pass{color:#080}.fail{color:#b00}img{max-width:100%}</style></head><body>
<h1>{{ s.title }}</h1>
<p>{{ s.description }}</p>
<p class="{{ 'pass' if summary.passed else 'fail' }}"><b>{{ 'PASS' if summary.passed else 'FAIL' }}</b>: {{ summary.verdict }}</p>
<table>
{% for key, value in summary.facts %}<tr><th>{{ key }}</th><td>{{ value }}</td></tr>{% endfor %}
</table>
<h2>The answer</h2><p>{{ s.answer }}</p>
<h2>Alerts</h2>
<table><tr><th>alert</th><th>labels</th><th>first seen (s)</th><th>last seen (s)</th></tr>
{% for a in alerts %}<tr><td>{{ a.alertname }}</td><td>{{ a.labels_text }}</td><td>{{ a.first }}</td><td>{{ a.last }}</td></tr>{% endfor %}
</table>
<h2>Timeline</h2>
{% for title, png in plots %}<h3>{{ title }}</h3><img alt="{{ title }}" src="data:image/png;base64,{{ png }}">{% endfor %}
<p>Files: experiment.yaml, journal.json (Chaos Toolkit), timeline.csv, alerts.json, locust_stats.csv, summary.json.</p>
</body></html>"""


def plot(
    observation: Observation, series: str, title: str, threshold: float | None, window: tuple[float, float]
) -> bytes:
    start = observation.started
    figure, axes = plt.subplots(figsize=(10, 3.2))
    services = sorted({s.service for s in observation.samples})
    for service in services:
        points = [(s.t - start, s.values.get(series, 0.0)) for s in observation.samples if s.service == service]
        if points:
            axes.plot([p[0] for p in points], [p[1] for p in points], label=service, linewidth=1.4)
    axes.axvspan(window[0] - start, window[1] - start, color="#f4a3a3", alpha=0.3, label="fault window")
    if threshold is not None:
        axes.axhline(threshold, color="#b00", linestyle="--", linewidth=1, label=f"{threshold}x")
    for alert in observation.alerts.values():
        if alert.alertname != "Watchdog":
            axes.axvline(alert.first_seen - start, color="#555", linestyle=":", linewidth=1)
    axes.set_title(title)
    axes.set_xlabel("seconds since the run started")
    axes.legend(loc="upper right", fontsize="small", ncol=3)
    axes.grid(alpha=0.3)
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()


def write_report(
    run_dir: Path, scenario: Any, observation: Observation, summary: Any, window: tuple[float, float]
) -> Path:
    plots = []
    for series, title, threshold in PANELS:
        png = plot(observation, series, title, threshold, window)
        (run_dir / f"plot-{series}.png").write_bytes(png)
        plots.append((title, base64.b64encode(png).decode()))
    alerts = [
        {
            "alertname": a.alertname,
            "labels_text": ", ".join(f"{k}={v}" for k, v in sorted(a.labels.items()) if k != "alertname"),
            "first": round(a.first_seen - observation.started, 1),
            "last": round(a.last_seen - observation.started, 1),
        }
        for a in sorted(observation.alerts.values(), key=lambda a: a.first_seen)
    ]
    environment = Environment(autoescape=select_autoescape(default=True))
    html = environment.from_string(TEMPLATE).render(s=scenario, summary=summary, alerts=alerts, plots=plots)
    path = run_dir / "report.html"
    path.write_text(html)
    return path
