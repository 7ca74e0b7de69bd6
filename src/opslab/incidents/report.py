"""An incident's run directory: evidence.json (the timeline), score.json, answer.md and report.html,
whose plots put the responder's actions on the SLIs."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from jinja2 import Environment, select_autoescape

from opslab.incidents.catalog import Incident
from opslab.incidents.scorer import ERROR_OBJECTIVE, SLOW_OBJECTIVE, Evidence, Score
from opslab.incidents.timeline import AlertSpan

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>opslab incident {{ incident.name }}</title>
<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}
.ok{color:#080}.bad{color:#b00}img{max-width:100%}</style></head><body>
<h1>Incident {{ incident.name }}: {{ incident.title }}</h1>
<p><b>{{ score.points }} / 100</b> ({% for k, v in score.breakdown.items() %}{{ k }} {{ v }}{% if not loop.last %}, {% endif %}{% endfor %})</p>
<table>
<tr><th>detected</th><td>{{ 'yes' if score.detected else 'no' }}{% if score.time_to_detect is not none %}, {{ '%.0f' % score.time_to_detect }} s after the fault{% endif %}</td></tr>
<tr><th>first alert</th><td>{% if score.alerted_after is not none %}{{ '%.0f' % score.alerted_after }} s after the fault{% else %}none{% endif %}</td></tr>
<tr><th>localised / diagnosed</th><td>{{ '%.0f' % (score.localised * 100) }} % / {{ '%.0f' % (score.diagnosed * 100) }} %</td></tr>
<tr><th>mitigated</th><td class="{{ 'ok' if score.mitigated else 'bad' }}">{{ 'yes' if score.mitigated else 'no' }}{% if score.time_to_mitigate is not none %}, {{ '%.0f' % score.time_to_mitigate }} s after the fault{% endif %}</td></tr>
<tr><th>actions</th><td>{{ score.actions }}</td></tr>
</table>
{% if score.reasons %}<h2>Why points were lost</h2><ul>{% for r in score.reasons %}<li>{{ r }}</li>{% endfor %}</ul>{% endif %}
<h2>SLIs and actions</h2><p>The dashed line is when the fault went in; each dotted line is one of your actions.</p>
{% for title, image in plots %}<h3>{{ title }}</h3><img alt="{{ title }}" src="data:image/png;base64,{{ image }}">{% endfor %}
<h2>Your actions</h2><table><tr><th>s after the fault</th><th>action</th></tr>
{% for a in actions %}<tr><td>{{ a[0] }}</td><td>{{ a[1] }}</td></tr>{% endfor %}</table>
<h2>Your diagnoses</h2><table><tr><th>s after the fault</th><th>service</th><th>fault type</th><th>notes</th></tr>
{% for s in submissions %}<tr><td>{{ s[0] }}</td><td>{{ s[1].service }}</td><td>{{ s[1].fault_type }}</td><td>{{ s[1].notes }}</td></tr>{% endfor %}</table>
<h2>Alerts</h2><table><tr><th>alert</th><th>labels</th><th>first (s)</th><th>last (s)</th></tr>
{% for a in alerts %}<tr><td>{{ a[0].alertname }}</td><td>{{ a[1] }}</td><td>{{ a[2] }}</td><td>{{ a[3] }}</td></tr>{% endfor %}</table>
<h2>The answer</h2><ul>{% for f in incident.answer %}<li>{{ f.service }}: {{ f.fault_type }}</li>{% endfor %}</ul>
<p>What went in: {{ injected | join('; ') or 'nothing' }}.</p>
<h2>Debrief</h2><p>{{ incident.debrief }}</p>
</body></html>
"""


def _plot(evidence: Evidence, series: str, objective: float) -> str:
    figure, axes = plt.subplots(figsize=(10, 3))
    services = sorted({s.service for s in evidence.samples})
    for service in services:
        points = [s for s in evidence.samples if s.service == service]
        axes.plot([p.t - evidence.injected_at for p in points], [getattr(p, series) for p in points], label=service)
    axes.axhline(objective, color="red", linewidth=0.8, label="objective")
    axes.axvline(0, color="black", linestyle="--", linewidth=1)
    for action in evidence.actions:
        axes.axvline(action.t - evidence.injected_at, color="purple", linestyle=":", linewidth=1)
    axes.set_xlabel("seconds after the fault")
    axes.legend(loc="upper right", fontsize="small", ncol=4)
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def write_report(
    run_dir: Path,
    incident: Incident,
    evidence: Evidence,
    score: Score,
    *,
    spans: Sequence[AlertSpan],
    injected: Sequence[str],
) -> Path:
    t0 = evidence.injected_at
    (run_dir / "evidence.json").write_text(
        json.dumps(
            {
                "injected_at": t0,
                "ended_at": evidence.ended_at,
                "first_alert_at": evidence.first_alert_at,
                "submissions": [asdict(s) for s in evidence.submissions],
                "actions": [asdict(a) for a in evidence.actions],
                "intent_problems": list(evidence.intent_problems),
                "tampered": list(evidence.tampered),
                "alerts": [asdict(s) for s in spans],
                "slis": [asdict(s) for s in evidence.samples],
            },
            indent=1,
        )
    )
    (run_dir / "score.json").write_text(json.dumps(score.as_dict(), indent=1))
    answer = "\n".join(f"- {f.service}: {f.fault_type}" for f in incident.answer)
    (run_dir / "answer.md").write_text(
        f"# {incident.name}: {incident.title}\n\n{answer}\n\nWhat went in: {'; '.join(injected) or 'nothing'}.\n\n"
        f"{incident.debrief}\n"
    )
    plots = [
        ("Error ratio (5xx share, 25 s window)", _plot(evidence, "error_ratio", ERROR_OBJECTIVE)),
        ("Slow ratio (share over 250 ms, 25 s window)", _plot(evidence, "slow_ratio", SLOW_OBJECTIVE)),
    ]
    html = (
        Environment(autoescape=select_autoescape(default=True))
        .from_string(TEMPLATE)
        .render(
            incident=incident,
            score=score,
            plots=plots,
            actions=[(f"{a.t - t0:.0f}", a.text) for a in evidence.actions],
            submissions=[(f"{s.t - t0:.0f}", s) for s in evidence.submissions],
            alerts=[
                (
                    s,
                    ", ".join(f"{k}={v}" for k, v in s.labels.items() if k != "alertname"),
                    f"{s.first - t0:.0f}",
                    f"{s.last - t0:.0f}",
                )
                for s in spans
            ],
            injected=list(injected),
        )
    )
    path = run_dir / "report.html"
    path.write_text(html)
    return path
