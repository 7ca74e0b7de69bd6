"""The month of history Thanos' bucket is seeded with: whole, consistent series with the incidents
in them, in OpenMetrics that Prometheus' own parser reads, one text per 2-hour block."""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from opslab.runtime import history

END = 1_796_428_800  # a 00:00 UTC


@pytest.fixture(scope="module")
def everything() -> list[history.Series]:
    return history.series()


def test_the_history_ends_at_midnight_and_spans_35_days() -> None:
    generated = history.Generated(history.VERSION, history.end_for(END + 3600 * 17 + 5))
    assert generated.end == END
    assert generated.end - generated.start == (35 * 24 * 60 - 1) * 60


def test_counters_never_decrease_and_histograms_are_cumulative(everything: list[history.Series]) -> None:
    for _, labels, values in everything:
        assert all(b >= a for a, b in itertools.pairwise(values)), labels
    by_service: dict[str, dict[str, list[float]]] = {}
    for _, labels, values in everything:
        service = labels.split('service="')[1].split('"')[0]
        by_service.setdefault(service, {})[labels.split("{")[0] + labels.split(",")[-1]] = values
    for service, found in by_service.items():
        buckets = [
            found[f'shop_http_request_duration_seconds_bucketle="{le}"}}']
            for le in ("0.1", "0.25", "0.5", "1.0", "+Inf")
        ]
        for lower, upper in itertools.pairwise(buckets):
            assert all(a <= b for a, b in zip(lower, upper, strict=True)), service
        requests = [
            a + b
            for a, b in zip(
                found['shop_http_requests_totalcode="200"}'], found['shop_http_requests_totalcode="500"}'], strict=True
            )
        ]
        assert buckets[-1] == requests, f"{service}: +Inf bucket is not the request count"


def test_an_incident_shows_in_its_service_only_and_at_its_size() -> None:
    incident = history.INCIDENTS[0]
    during = history.minute_of(incident.service, incident.start_minute + 5)
    before = history.minute_of(incident.service, incident.start_minute - 5)
    assert during.errors / during.requests == pytest.approx(incident.error_ratio, abs=0.01)
    assert before.errors / before.requests < 0.005
    others = [s for s in history.SERVICES if s != incident.service]
    assert all(history.incident_at(s, incident.start_minute + 5) is None for s in others)
    for one in history.INCIDENTS:
        assert one.start_minute >= 0 and one.start_minute + one.minutes <= history.minutes(), one.id


def test_each_text_is_one_block_and_parses_as_openmetrics(everything: list[history.Series]) -> None:
    generated = history.Generated(history.VERSION, END)
    texts = list(history.openmetrics(generated, everything))
    assert all(window % history.BLOCK_SECONDS == 0 for window, _ in texts)
    assert len(texts) == 35 * 12 + 1  # the last sample, at midnight, opens a block of its own
    lines = sum(text.count("\n") - text.count("#") for _, text in texts)
    assert lines == len(everything) * history.minutes()
    for window, text in (texts[0], texts[200], texts[-1]):
        # prometheus_client's parser checks a histogram one timestamp at a time: the counters
        # whole, and the histograms' first timestamp (promtool, which reads them all, is the
        # integration test's).
        counters, histograms = text.split("# TYPE shop_http_request_duration_seconds", 1)
        first = histograms.splitlines()[: 1 + 7 * len(history.SERVICES)]
        first_time = [line for line in first[1:] if line.endswith(f" {window}") or line.endswith(f" {generated.start}")]
        parsed = [
            *text_string_to_metric_families(counters + "# EOF\n"),
            *text_string_to_metric_families("# TYPE shop_http_request_duration_seconds" + first[0] + "\n"
                                            + "\n".join(first_time[:7]) + "\n# EOF\n"),
        ]  # fmt: skip
        families = {f.name: f for f in parsed}
        assert families["shop_http_requests"].type == "counter"
        assert families["shop_http_request_duration_seconds"].type == "histogram"
        for family in families.values():
            assert family.samples
            for sample in family.samples:
                assert sample.timestamp is not None
                assert window <= float(sample.timestamp) < window + history.BLOCK_SECONDS


def test_blocks_are_made_once_a_day_and_day_old_entries_removed(tmp_path: Path) -> None:
    """The cache: today's blocks are reused; entries a day old (other days, other versions, a killed
    run's scratch) removed, younger ones kept (another checkout may be copying them). A stand-in
    promtool records its calls and that each block's text was there when it ran."""
    calls = tmp_path / "calls"
    promtool = tmp_path / "promtool"
    promtool.write_text(f'#!/bin/sh\ntest -s "$5" && echo "$5" >> {calls}\nmkdir -p "$6/01BLOCK"\n')
    promtool.chmod(0o755)
    cache = tmp_path / "cache"
    old, young = cache / f"v{history.VERSION}-{END - 2 * 86400}", cache / f"v0-{END}"
    scratch = cache / ".making-killed"
    for entry in (old, young, scratch):
        entry.mkdir(parents=True)
    for entry in (old, scratch):
        os.utime(entry, (time.time() - 2 * 86400, time.time() - 2 * 86400))
    want = history.Generated(history.VERSION, END)
    made = history.made_blocks(promtool, cache, want)
    assert (made / "01BLOCK").is_dir()
    assert len(calls.read_text().splitlines()) == 35 * 12 + 1  # one import per 2-hour block, each with its text
    assert sorted(p.name for p in cache.iterdir()) == sorted([made.name, young.name])
    calls.unlink()
    assert history.made_blocks(promtool, cache, want) == made
    assert not calls.exists(), "the day's blocks were made twice"


def test_a_failed_import_stops_at_once_and_leaves_no_blocks(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    promtool = tmp_path / "promtool"
    promtool.write_text(f'#!/bin/sh\necho x >> {calls}\necho "bad input" >&2\nexit 1\n')
    promtool.chmod(0o755)
    with pytest.raises(history.HistoryError, match="bad input"):
        history.made_blocks(promtool, tmp_path / "cache", history.Generated(history.VERSION, END))
    assert len(calls.read_text().splitlines()) <= 8, "the import went on after the first failure"
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_tally_counts_an_incidents_failures_and_its_share_of_the_budget() -> None:
    incident = next(i for i in history.INCIDENTS if i.id == "h-04")
    during = history.tally(incident.service, incident.start_minute, incident.start_minute + incident.minutes - 1)
    assert during.errors / during.requests == pytest.approx(incident.error_ratio, abs=0.005)
    month = history.tally(incident.service, *history.last_days(28))
    assert month.requests > 30 * during.requests
    quiet = history.tally("fulfilment", *history.last_days(28))
    assert quiet.budget_left() > 0.9 > month.budget_left(), "the incident must show in catalog's budget only"
    assert history.last_days(28) == (7 * 1440, 35 * 1440 - 1)


def test_another_month_differs_only_where_its_incidents_are() -> None:
    """A grader's month: the same traffic, its own incidents and cluster; the platform's is untouched."""
    other = history.Month((history.Incident("x-1", "cart", 20_000, 60, 0.5, 0.0, "cart down"),), "shop-test")
    first, last = history.last_days(28)
    assert other.tally("cart", first, last).errors > history.tally("cart", first, last).errors + 5_000
    assert other.tally("cart", first, last).requests == history.tally("cart", first, last).requests
    assert other.tally("fulfilment", first, last) == history.tally("fulfilment", first, last)
    gateway = next(i for i in history.INCIDENTS if i.service == "gateway")
    assert other.incident_at("gateway", gateway.start_minute) is None
    assert history.incident_at("gateway", gateway.start_minute) == gateway
    cart = [s for s in other.series() if 'service="cart",code="500"' in s[1]]
    assert cart and cart[0][2][-1] == other.tally("cart", 0, history.minutes() - 1).errors


def test_the_postmortem_log_gives_each_incident_its_times() -> None:
    generated = history.Generated(history.VERSION, END)
    log = history.postmortems(generated)
    assert [entry["id"] for entry in log] == [i.id for i in history.INCIDENTS]
    first = history.INCIDENTS[0]
    start = generated.start + first.start_minute * 60
    assert log[0]["start"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start))
    assert log[0]["end"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start + first.minutes * 60))


def test_a_month_may_answer_404s_and_fail_with_other_5xx_codes() -> None:
    """404s are requests (good for availability), an incident's failures carry its own code."""
    outage = history.Incident("x-2", "payments", 20_000, 30, 0.6, 0.0, "provider down", code=503)
    month = history.Month((outage,), "shop-test", not_found_ratio=0.02)
    payments = {labels: values[-1] for _, labels, values in month.series() if 'service="payments",code=' in labels}
    whole = month.tally("payments", 0, history.minutes() - 1)
    by_code = {labels.split('code="')[1][:3]: total for labels, total in payments.items()}
    assert set(by_code) == {"200", "404", "500", "503"}
    assert by_code["500"] + by_code["503"] == whole.errors
    assert sum(by_code.values()) == whole.requests
    assert abs(by_code["404"] - 0.02 * whole.requests) <= 1
    during = month.tally("payments", outage.start_minute, outage.start_minute + outage.minutes - 1)
    assert by_code["503"] == during.errors
