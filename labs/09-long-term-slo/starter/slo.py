"""Lab 9: a monthly SLO report from Thanos, for the 28 days ending at --end.

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
        """An instant query's value per service at ``at``.

        TODO (task 2): GET {self.url}/api/v1/query with the query, its time (Unix seconds) and
        max_source_resolution=RESOLUTION; return {service: value} of the result. The querier
        unreachable, an answer that is not JSON, or status != "success": raise ReportError with one
        line that says which.
        """
        raise NotImplementedError("Thanos.by_service is not written yet (task 2)")

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
    """The figures of the 28 days ending at ``end`` (README, task 3, lists every field).

    TODO (task 3): per service, requests and failed requests over the window (thanos.increase),
    availability, latency (thanos.fast), budget_left, and the worst of the four weeks from the
    window's start (week 1 the oldest) with the share of the 28-day budget it burned; per incident
    that started inside the window, its failed requests (increase over its span, read at its end)
    and budget_burned. No data for the cluster: raise ReportError.
    """
    raise NotImplementedError("report is not written yet (task 3)")


def markdown(figures: dict[str, Any]) -> str:
    """TODO (task 4): report.md for people: the window, a table row per service (availability,
    budget left in %, worst week) and a row per incident with its cost in %, as report.json says."""
    raise NotImplementedError("markdown is not written yet (task 4)")


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
