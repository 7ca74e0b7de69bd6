"""Lab 9 reference: a monthly SLO report from Thanos, for the 28 days ending at --end.

usage: python slo.py report --url URL --cluster NAME --end TIME --incidents FILE --out DIR
                            [--objective 0.995]

It asks the Thanos querier (its Prometheus HTTP API) for each service's requests and failures over
the window, each incident's failures and each week's, and writes DIR/report.json (the figures) and
DIR/report.md (the same, for people). Every query reads downsampled data where raw samples are gone
(max_source_resolution=5m): the compactor keeps raw samples for 14 days, and a query that asks for
raw data only silently covers just the last part of the month.

Exit 0: the report was written; 1: the querier failed or has no data for the cluster; 2: bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

WINDOW = timedelta(days=28)
WEEK = timedelta(days=7)
RESOLUTION = "5m"
"""The coarsest data a query may read. Raw samples are gone after 14 days, so 0s (raw only) silently
reads part of the month; 5m lets the querier use the compactor's 5-minute aggregates there."""


class ReportError(Exception):
    """A one-line reason to stop (exit 1)."""


def parse_time(text: str) -> datetime:
    """RFC 3339 (2026-12-05T00:00:00Z) or Unix seconds."""
    try:
        if text.replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(text), UTC)
        found = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time (RFC 3339, like 2026-12-05T00:00:00Z, or Unix seconds)"
        ) from None
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Thanos:
    def __init__(self, url: str, cluster: str) -> None:
        self.url = url.rstrip("/")
        self.cluster = cluster
        self.http = httpx.Client(timeout=60)

    def by_service(self, promql: str, at: datetime) -> dict[str, float]:
        """An instant query's value per service at ``at``."""
        params = {"query": promql, "time": f"{at.timestamp():.0f}", "max_source_resolution": RESOLUTION,
                  "partial_response": "false"}  # fmt: skip
        try:
            answer = self.http.get(f"{self.url}/api/v1/query", params=params)
        except httpx.HTTPError as exc:
            raise ReportError(f"cannot reach the querier at {self.url}: {exc}") from None
        try:
            body = answer.json()
        except ValueError:
            raise ReportError(
                f"{self.url} did not answer a Prometheus API response (HTTP {answer.status_code})"
            ) from None
        if body.get("status") != "success":
            raise ReportError(f"the querier refused {promql}: {body.get('error', answer.status_code)}")
        return {r["metric"].get("service", ""): float(r["value"][1]) for r in body["data"]["result"]}

    def increase(self, window: timedelta, at: datetime, *, failed: bool = False, service: str = "") -> dict[str, float]:
        """Requests (or failed ones) per service in the ``window`` ending at ``at``."""
        labels = f'cluster="{self.cluster}"' + (', code=~"5.."' if failed else "") + (
            f', service="{service}"' if service else "")  # fmt: skip
        seconds = int(window.total_seconds())
        return self.by_service(f"sum by (service) (increase(shop_http_requests_total{{{labels}}}[{seconds}s]))", at)

    def fast(self, window: timedelta, at: datetime) -> dict[str, float]:
        """Requests per service answered within 250 ms in the ``window`` ending at ``at``."""
        seconds = int(window.total_seconds())
        return self.by_service(
            f'sum by (service) (increase(shop_http_request_duration_seconds_bucket{{cluster="{self.cluster}", '
            f'le="0.25"}}[{seconds}s]))', at)  # fmt: skip


def load_incidents(path: Path) -> list[dict[str, Any]]:
    try:
        raw = json.loads(path.read_text())
        return [{"id": str(i["id"]), "service": str(i["service"]), "title": str(i.get("title", "")),
                 "start": parse_time(str(i["start"])), "end": parse_time(str(i["end"]))} for i in raw]  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError, argparse.ArgumentTypeError) as exc:
        raise argparse.ArgumentTypeError(f"{path}: not a list of incidents (id, service, start, end): {exc}") from None


def report(thanos: Thanos, end: datetime, incidents: list[dict[str, Any]], objective: float) -> dict[str, Any]:
    start = end - WINDOW
    requests = thanos.increase(WINDOW, end)
    if not requests:
        raise ReportError(
            f'the querier has no shop_http_requests_total for cluster="{thanos.cluster}" in the 28 days to {iso(end)}'
        )
    failed = thanos.increase(WINDOW, end, failed=True)
    fast = thanos.fast(WINDOW, end)
    allowed = {s: (1 - objective) * n for s, n in requests.items()}
    weeks = [thanos.increase(WEEK, start + WEEK * k, failed=True) for k in range(1, 5)]
    services: dict[str, Any] = {}
    for service, total in sorted(requests.items()):
        errors = failed.get(service, 0.0)
        burned = [week.get(service, 0.0) / allowed[service] for week in weeks]
        worst = max(range(4), key=burned.__getitem__)
        services[service] = {
            "requests": round(total),
            "failed": round(errors),
            "availability": 1 - errors / total,
            "latency": fast.get(service, 0.0) / total,
            "budget_left": 1 - errors / allowed[service],
            "worst_week": {"week": worst + 1, "start": iso(start + WEEK * worst), "budget_burned": burned[worst]},
        }
    costs = []
    for incident in sorted(incidents, key=lambda i: i["start"]):
        if incident["start"] < start or incident["start"] >= end or incident["service"] not in allowed:
            continue  # another month's budget paid for it
        span = incident["end"] - incident["start"]
        errors = thanos.increase(span, incident["end"], failed=True, service=incident["service"]).get(
            incident["service"], 0.0
        )
        costs.append({"id": incident["id"], "service": incident["service"], "title": incident["title"],
                      "start": iso(incident["start"]), "end": iso(incident["end"]), "failed": round(errors),
                      "budget_burned": errors / allowed[incident["service"]]})  # fmt: skip
    return {"cluster": thanos.cluster, "objective": objective,
            "window": {"start": iso(start), "end": iso(end), "days": WINDOW.days},
            "services": services, "incidents": costs}  # fmt: skip


def markdown(figures: dict[str, Any]) -> str:
    window = figures["window"]
    lines = [f"# SLO report: {figures['cluster']}, {window['start'][:10]} to {window['end'][:10]}", "",
             f"Availability objective {figures['objective']:.1%} of requests over {window['days']} days.", "",
             "| Service | Availability | Within 250 ms | Budget left | Worst week | Burned that week |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for service, s in figures["services"].items():
        worst = s["worst_week"]
        lines.append(f"| {service} | {s['availability']:.3%} | {s['latency']:.2%} | {s['budget_left']:.1%} | "
                     f"week {worst['week']} ({worst['start'][:10]}) | {worst['budget_burned']:.1%} |")  # fmt: skip
    lines += ["", "## Incidents", ""]
    if not figures["incidents"]:
        lines.append("No incident in the window.")
    else:
        lines += ["| Incident | Service | Start | Failed requests | Budget burned | What |",
                  "| --- | --- | --- | ---: | ---: | --- |"]  # fmt: skip
        for i in figures["incidents"]:
            cost = f"{i['budget_burned']:.1%}"
            lines.append(f"| {i['id']} | {i['service']} | {i['start']} | {i['failed']} | {cost} | {i['title']} |")
        spent = sorted(figures["incidents"], key=lambda i: -i["budget_burned"])[0]
        lines += ["", f"The costliest incident was {spent['id']} ({spent['service']}): {spent['budget_burned']:.1%} "
                      "of its month's error budget."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("report", help="write report.json and report.md for the 28 days ending at --end")
    cmd.add_argument("--url", required=True, help="the Thanos querier, e.g. $OPSLAB_THANOS_URL")
    cmd.add_argument("--cluster", required=True, help="the external label cluster of the month, e.g. shop-prod")
    cmd.add_argument("--end", required=True, type=parse_time, help="the window's end (RFC 3339 or Unix seconds)")
    cmd.add_argument("--incidents", required=True, type=Path, help="JSON list of incidents (id, service, start, end)")
    cmd.add_argument("--out", required=True, type=Path, help="directory for report.json and report.md")
    cmd.add_argument("--objective", type=float, default=0.995, help="availability objective (default 0.995)")
    args = parser.parse_args(argv)
    if not 0 < args.objective < 1:
        parser.error(f"--objective {args.objective} is not a share between 0 and 1 (like 0.995)")
    try:
        incidents = load_incidents(args.incidents)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    try:
        figures = report(Thanos(args.url, args.cluster), args.end, incidents, args.objective)
    except ReportError as exc:
        print(f"slo: {exc}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(figures, indent=2) + "\n")
    (args.out / "report.md").write_text(markdown(figures))
    print(f"slo: wrote {args.out / 'report.md'} and report.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
