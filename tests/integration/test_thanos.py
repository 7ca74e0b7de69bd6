"""Thanos as `up` runs it: the querier answers for the live platform (through the sidecar) and for
the 35-day history in the bucket (through the store gateway), sample for sample what the history's
model says; the compactor downsamples the history, and a query restricted to 1 h resolution still
answers for a month ago."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from opslab.grading.fixtures import eventually
from opslab.runtime import history
from opslab.runtime.lifecycle import Platform

pytestmark = pytest.mark.platform


def query(platform: Platform, promql: str, at: float, **params: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{platform.settings.ports.thanos_query}/api/v1/query"
    answer = httpx.get(url, params={"query": promql, "time": str(at), **params}, timeout=30).json()
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def generated(platform: Platform) -> history.Generated:
    marker = platform.settings.paths.data / "thanos-bucket" / history.MARKER
    return history.Generated(**json.loads(marker.read_text()))


def test_the_querier_answers_for_the_live_platform_and_a_month_ago(platform: Platform) -> None:
    stores = httpx.get(f"http://127.0.0.1:{platform.settings.ports.thanos_query}/api/v1/stores", timeout=10).json()
    kinds = {kind for kind, endpoints in stores["data"].items() if endpoints}
    assert {"sidecar", "store"} <= kinds, stores

    live = eventually(lambda: query(platform, 'up{job="prometheus"}', at=time.time()), 60)
    assert live and live[0]["metric"]["cluster"] == "opslab", live

    month = generated(platform)

    def failed(incident: history.Incident, resolution: str) -> tuple[float, float, float]:
        """The incident's 5xx counter at its end, and its failed requests over it (increase), as
        the querier answers them; and the model's counter at the end."""
        minute = incident.start_minute + incident.minutes  # the incident just over
        at = month.start + minute * history.STEP_SECONDS
        series = f'shop_http_requests_total{{cluster="{history.CLUSTER}",service="{incident.service}",code="500"}}'
        counter = eventually(lambda: query(platform, series, at=at, max_source_resolution=resolution), 90)
        assert counter, f"no answer for {series} a month ago at {resolution} (the store gateway serves the bucket)"
        window = f"{incident.minutes + 1}m"
        increase = query(platform, f"increase({series}[{window}])", at=at, max_source_resolution=resolution)
        return (
            float(counter[0]["value"][1]),
            float(increase[0]["value"][1]),
            history.tally(incident.service, 0, minute).errors,
        )

    # Two days old: raw samples, sample for sample what the model says.
    recent = next(i for i in history.INCIDENTS if i.id == "h-07")
    counter, increase, want = failed(recent, "0s")
    assert counter == want
    during = history.tally(recent.service, recent.start_minute, recent.start_minute + recent.minutes).errors
    assert increase == pytest.approx(during, rel=0.1)

    # A month old: past the compactor's 14 days of raw samples, so from 5-minute aggregates (raw
    # until the compactor has run): the counter's value at most 5 minutes behind the model's.
    old = history.INCIDENTS[0]
    assert month.start + old.start_minute * 60 < time.time() - 30 * 86400, "the incident is meant to be a month old"
    counter, increase, want = failed(old, "5m")
    end = old.start_minute + old.minutes
    assert history.tally(old.service, 0, end - 5).errors <= counter <= want
    during = history.tally(old.service, old.start_minute, end).errors
    assert increase == pytest.approx(during, rel=0.1)


def test_the_compactor_downsamples_the_history_and_old_data_stays_answerable(platform: Platform) -> None:
    bucket = platform.settings.paths.data / "thanos-bucket"

    def resolutions() -> set[int]:
        found = set()
        for meta in bucket.glob("*/meta.json"):
            try:
                found.add(json.loads(meta.read_text())["thanos"]["downsample"]["resolution"])
            except (OSError, ValueError, KeyError):
                continue  # being written or deleted
        return found

    assert eventually(lambda: {300_000, 3_600_000} <= resolutions(), 180), (
        f"the compactor made no 5 m and 1 h blocks: resolutions {sorted(resolutions())} ({_log(platform)})"
    )
    month = generated(platform)
    at = month.start + 3 * 86400
    promql = f'sum(shop_http_requests_total{{cluster="{history.CLUSTER}"}})'
    minute = (at - month.start) // history.STEP_SECONDS
    want = sum(history.minute_of(service, m).requests for service in history.SERVICES for m in range(minute + 1))
    coarse = eventually(lambda: query(platform, promql, at=at, max_source_resolution="1h"), 120)
    assert coarse, f"no answer at 1 h resolution for {promql}"
    assert float(coarse[0]["value"][1]) == pytest.approx(want, rel=0.01)


def _log(platform: Platform) -> str:
    log: Path = platform.settings.paths.logs / "thanos-compact.log"
    return " | ".join(log.read_text(errors="replace").splitlines()[-5:]) if log.is_file() else "no log"
