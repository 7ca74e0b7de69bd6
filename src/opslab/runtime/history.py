"""A month of the shop's history, without waiting a month: 35 days of its SLI series written as TSDB
blocks into Thanos' bucket, with incidents of known size in them.

The history is the shop's production twin (external label ``cluster="shop-prod"``; the live
platform is ``cluster="opslab"``), so the month never mixes with what the live shop adds. The
series have the live shop's names and the labels its SLO rules aggregate by:

- ``shop_http_requests_total{service, code}``: code 200, or 500 for a failed request;
- ``shop_http_request_duration_seconds_{bucket,count,sum}{service}``: buckets 0.1, 0.25 (the
  latency objective's threshold), 0.5, 1 and +Inf.

Traffic follows a day (quiet at night) and a week (quieter at weekends); errors and slow answers
stay well inside the objectives except during the incidents in :data:`INCIDENTS`, each a service,
a start (minutes into the month), a length, and the share of failed and slow requests meanwhile.
Everything is a pure function of the minute, so a grader or a notebook recomputes any answer
(:func:`tally`) without reading the blocks; ``history.json`` in the bucket says when minute 0 was.

The blocks are made by Prometheus' own importer (``promtool tsdb create-blocks-from openmetrics``)
and uploaded with ``thanos tools bucket upload-blocks``, which adds the external labels.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import math
import shutil
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from opslab.primitives.errors import OpslabError
from opslab.primitives.files import write_atomic
from opslab.primitives.processes import run

DAYS = 35
STEP_SECONDS = 60
"""One sample a minute: finer than Thanos' 5 m downsampling, so both raw and downsampled data exist."""
CLUSTER = "shop-prod"
"""The external ``cluster`` label of the history (the live platform's is ``opslab``)."""
MARKER = "history.json"
"""Written into the bucket last: what was generated (end time, version); its absence means none was."""
VERSION = 2
"""Bump when the model changes: a bucket with another version's history gets a new one."""
BUCKETS = (0.1, 0.25, 0.5, 1.0)
SERVICES: dict[str, float] = {
    # Requests per second at the daily peak.
    "gateway": 40.0,
    "catalog": 30.0,
    "cart": 12.0,
    "checkout": 6.0,
    "payments": 5.0,
    "fulfilment": 5.0,
}
BASE_ERROR_RATIO = 0.0004
"""Failed requests outside incidents (the availability objective allows 0.5 %)."""
BASE_SLOW_RATIO = 0.003
"""Requests over 250 ms outside incidents (the latency objective allows 1 %)."""
DAY_MINUTES = 24 * 60


@dataclass(frozen=True)
class Incident:
    """A stretch of the month in which one service failed or slowed down."""

    id: str
    service: str
    start_minute: int
    """Minutes after the history's start."""
    minutes: int
    error_ratio: float
    """The share of the service's requests that failed meanwhile (base errors included)."""
    slow_ratio: float
    """The share of its requests slower than 250 ms meanwhile."""
    title: str
    code: int = 500
    """The status its failed requests answered meanwhile (503, 504: any 5xx)."""


def _at(day: int, hour: int, minute: int = 0) -> int:
    return day * DAY_MINUTES + hour * 60 + minute


INCIDENTS: tuple[Incident, ...] = (
    Incident("h-01", "payments", _at(3, 14, 10), 95, 0.22, 0.05, "payment provider returns 503"),
    Incident("h-02", "gateway", _at(9, 2, 40), 30, 0.60, 0.10, "bad gateway release, rolled back"),
    Incident("h-03", "checkout", _at(15, 11, 0), 240, 0.02, 0.35, "checkout slow: database lock contention"),
    Incident("h-04", "catalog", _at(21, 19, 30), 50, 0.35, 0.02, "catalog out of memory"),
    Incident("h-05", "payments", _at(24, 9, 5), 20, 0.90, 0.00, "payments certificate expired"),
    Incident("h-06", "cart", _at(30, 16, 20), 180, 0.01, 0.20, "cart cache cold after a Redis failover"),
    Incident("h-07", "gateway", _at(33, 8, 0), 15, 0.40, 0.40, "gateway connection pool exhausted"),
)


@dataclass(frozen=True)
class Tally:
    """What a service answered over a stretch of the history."""

    requests: int
    errors: int
    slow: int

    def budget_left(self, objective: float = 0.995) -> float:
        """The share of the error budget (1 - objective of the requests) not spent by errors."""
        return 1 - (self.errors / self.requests) / (1 - objective) if self.requests else 1.0


@dataclass(frozen=True)
class Minute:
    """What one service answered in one minute."""

    requests: int
    errors: int
    """Failed requests (5xx)."""
    slow: int
    refused: int = 0
    """Requests answered 404: the client's mistake, not a failure of the service."""


def traffic(service: str, minute: int) -> float:
    """Requests per second of ``service`` in minute ``minute`` of the history (quiet at 04:00 UTC,
    busiest at 16:00; days 6 and 7 of each of its weeks quieter)."""
    hour = (minute % DAY_MINUTES) / 60
    daily = 0.55 + 0.45 * math.sin(2 * math.pi * (hour - 10) / 24)
    weekend = 0.7 if (minute // DAY_MINUTES) % 7 in (5, 6) else 1.0
    return SERVICES[service] * daily * weekend


@dataclass(frozen=True)
class Month:
    """One month of the shop: the same traffic, its own incidents and ``cluster`` label. The
    platform's is :data:`SHOP_PROD`; a grader makes others (held-out incidents) the same way."""

    incidents: tuple[Incident, ...] = INCIDENTS
    cluster: str = CLUSTER
    not_found_ratio: float = 0.0
    """The share of requests answered 404 (none in the platform's month): good for availability."""

    def incident_at(self, service: str, minute: int) -> Incident | None:
        for incident in self.incidents:
            if (
                incident.service == service
                and incident.start_minute <= minute < incident.start_minute + incident.minutes
            ):
                return incident
        return None

    def minute_of(self, service: str, minute: int) -> Minute:
        """The requests, failures and slow answers of ``service`` in minute ``minute``: whole
        numbers, rounded cumulatively, so a share too small for one minute (0.04 % of 100 requests)
        still shows over many, as real errors do."""
        requests, errors, slow, refused = self._expected(service)
        return Minute(
            requests[minute],
            round(errors[minute + 1]) - round(errors[minute]),
            round(slow[minute + 1]) - round(slow[minute]),
            round(refused[minute + 1]) - round(refused[minute]),
        )

    @functools.cache  # noqa: B019 (a handful of frozen months, each kept for its process)
    def _expected(self, service: str) -> tuple[list[int], list[float], list[float], list[float]]:
        """Per minute, the requests; and the expected errors, slow answers and 404s summed before
        each minute."""
        requests: list[int] = []
        errors, slow, refused = [0.0], [0.0], [0.0]
        for minute in range(minutes()):
            count = round(traffic(service, minute) * STEP_SECONDS)
            incident = self.incident_at(service, minute)
            requests.append(count)
            errors.append(errors[-1] + count * (incident.error_ratio if incident else BASE_ERROR_RATIO))
            slow.append(slow[-1] + count * (incident.slow_ratio if incident else BASE_SLOW_RATIO))
            refused.append(refused[-1] + count * self.not_found_ratio)
        return requests, errors, slow, refused

    def tally(self, service: str, first: int, last: int) -> Tally:
        """``service``'s requests, errors and slow answers in minutes ``first`` to ``last``, inclusive."""
        found = [self.minute_of(service, m) for m in range(max(first, 0), min(last, minutes() - 1) + 1)]
        return Tally(sum(m.requests for m in found), sum(m.errors for m in found), sum(m.slow for m in found))

    def series(self) -> list[Series]:
        """Every series of the month, its values cumulative (counters and histograms)."""
        return _series(self)

    @property
    def key(self) -> str:
        """Names the month in cache entries: its cluster and a digest of its incidents (a month
        changed under the same cluster label is another month)."""
        digest = hashlib.sha256(repr(self.incidents).encode()).hexdigest()[:10]
        return f"{self.cluster}-{digest}"


SHOP_PROD = Month()
"""The history every platform's bucket holds."""


def incident_at(service: str, minute: int) -> Incident | None:
    return SHOP_PROD.incident_at(service, minute)


def minute_of(service: str, minute: int) -> Minute:
    """:meth:`Month.minute_of` of the platform's month."""
    return SHOP_PROD.minute_of(service, minute)


def minutes() -> int:
    return DAYS * DAY_MINUTES


def tally(service: str, first: int, last: int) -> Tally:
    """:meth:`Month.tally` of the platform's month."""
    return SHOP_PROD.tally(service, first, last)


def last_days(days: int) -> tuple[int, int]:
    """The first and last minute of the history's last ``days`` days."""
    return minutes() - days * DAY_MINUTES, minutes() - 1


@dataclass(frozen=True)
class Generated:
    """The marker: which history the bucket holds."""

    version: int
    end: int
    """Unix seconds of the history's last sample (a whole day: 00:00 UTC)."""
    cluster: str = CLUSTER
    days: int = DAYS

    @property
    def start(self) -> int:
        """Unix seconds of minute 0."""
        return self.end - (minutes() - 1) * STEP_SECONDS


INCIDENTS_FILE = "incidents.json"
"""Beside the marker in the bucket: the month's incidents as a postmortem log (:func:`postmortems`)."""


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def postmortems(generated: Generated, month: Month = SHOP_PROD) -> list[dict[str, str]]:
    """The month's incidents as its team logged them: id, service, title, start and end (RFC 3339,
    UTC; the end is when it was over)."""
    at = generated.start
    return [{"id": i.id, "service": i.service, "title": i.title, "start": iso(at + i.start_minute * STEP_SECONDS),
             "end": iso(at + (i.start_minute + i.minutes) * STEP_SECONDS)} for i in month.incidents]  # fmt: skip


def end_for(now: float) -> int:
    """The history ends at the last 00:00 UTC before ``now``: the month is whole days, and two
    platforms generating on the same day hold the same history."""
    return int(now // 86400 * 86400)


def latency(m: Minute) -> tuple[tuple[int, ...], float]:
    """How one minute's answers fall into the buckets (0.1, 0.25, 0.5, 1, +Inf; not cumulative)
    and their total seconds: 95 % of the fast answers under 100 ms, the slow ones 2/3 under 500 ms
    and a tenth over 1 s."""
    fast = m.requests - m.slow
    under_100ms = fast - fast // 20
    over_1s = m.slow // 10
    under_500ms = (m.slow - over_1s) * 2 // 3
    counts = (under_100ms, fast - under_100ms, under_500ms, m.slow - over_1s - under_500ms, over_1s)
    seconds = under_100ms * 0.04 + (fast - under_100ms) * 0.15 + under_500ms * 0.35 + counts[3] * 0.7 + over_1s * 2.0
    return counts, seconds


Series = tuple[str, str, list[float]]
"""A metric family, one series of it (name and labels as OpenMetrics writes them) and its value in
each minute."""


def series() -> list[Series]:
    """Every series of the platform's month, its values cumulative (counters and histograms)."""
    return _series(SHOP_PROD)


def _series(month: Month) -> list[Series]:
    count = minutes()
    found: list[Series] = []
    name = "shop_http_request_duration_seconds"
    bounds = (*[str(b) for b in BUCKETS], "+Inf")
    for service in SERVICES:
        ok: list[float] = []
        # Failures answer 500, or what the incident of the minute answers; 404s only if the month has them.
        codes = [500, *sorted({i.code for i in month.incidents if i.service == service} - {500})]
        failed: dict[int, list[float]] = {code: [] for code in codes}
        not_found: list[float] = []
        buckets: list[list[float]] = [[] for _ in bounds]
        seconds: list[float] = []
        totals = [0.0] * (len(bounds) + 3)
        by_code = dict.fromkeys(codes, 0.0)
        refused = 0.0
        for minute in range(count):
            m = month.minute_of(service, minute)
            counts, spent = latency(m)
            incident = month.incident_at(service, minute)
            totals[0] += m.requests - m.errors - m.refused
            by_code[incident.code if incident else 500] += m.errors
            refused += m.refused
            totals[2] += spent
            ok.append(totals[0])
            for code in codes:
                failed[code].append(by_code[code])
            not_found.append(refused)
            seconds.append(totals[2])
            cumulative = 0.0
            for i, counted in enumerate(counts):
                totals[3 + i] += counted
                cumulative += totals[3 + i]
                buckets[i].append(cumulative)
        found.append(("shop_http_requests", f'shop_http_requests_total{{service="{service}",code="200"}}', ok))
        found += [("shop_http_requests", f'shop_http_requests_total{{service="{service}",code="{code}"}}', failed[code])
                  for code in codes]  # fmt: skip
        if month.not_found_ratio:
            found.append(
                ("shop_http_requests", f'shop_http_requests_total{{service="{service}",code="404"}}', not_found)
            )
        found += [(name, f'{name}_bucket{{service="{service}",le="{le}"}}', buckets[i]) for i, le in enumerate(bounds)]
        found += [
            (name, f'{name}_count{{service="{service}"}}', buckets[-1]),
            (name, f'{name}_sum{{service="{service}"}}', seconds),
        ]
    return found


BLOCK_SECONDS = 2 * 3600
"""Prometheus' block length, which promtool writes (its 2.42 importer has no other)."""


def groups(everything: list[Series]) -> list[list[Series]]:
    """Series that OpenMetrics writes together, time by time: a counter alone, a histogram's
    buckets, count and sum per service."""
    found: dict[tuple[str, str], list[Series]] = {}
    for one in everything:
        name, labels, _ = one
        service = labels.split('service="', 1)[1].split('"', 1)[0]
        key = (name, labels) if name == "shop_http_requests" else (name, service)
        found.setdefault(key, []).append(one)
    # Each family once, its series together (OpenMetrics names a family once).
    return sorted(found.values(), key=lambda group: group[0][0] != "shop_http_requests")


def openmetrics(generated: Generated, everything: list[Series]) -> Iterator[tuple[int, str]]:
    """The history as OpenMetrics texts, one per 2-hour block (promtool reads its whole input once
    per block it writes, so one file per block keeps the import linear)."""
    kinds = {"shop_http_requests": "counter", "shop_http_request_duration_seconds": "histogram"}
    grouped = groups(everything)
    first = generated.start // BLOCK_SECONDS * BLOCK_SECONDS
    for window in range(first, generated.end + 1, BLOCK_SECONDS):
        lo = max(0, (window - generated.start) // STEP_SECONDS)
        hi = min(minutes(), (window + BLOCK_SECONDS - generated.start) // STEP_SECONDS)
        lines: list[str] = []
        family = ""
        for group in grouped:
            if group[0][0] != family:
                family = group[0][0]
                lines.append(f"# TYPE {family} {kinds[family]}\n")
            for i in range(lo, hi):
                timestamp = generated.start + i * STEP_SECONDS
                lines += [f"{labels} {values[i]:.10g} {timestamp}\n" for _, labels, values in group]
        lines.append("# EOF\n")
        yield window, "".join(lines)


class HistoryError(OpslabError):
    """The history could not be generated or uploaded."""


def _import(promtool: Path, generated: Generated, blocks: Path, texts: Path, *, month: Month, workers: int = 2) -> None:
    """Each 2-hour block: its text written, promtool run on it, the text removed; ``workers`` blocks
    at a time, so at most that many texts are on disk. The first failure cancels the rest."""
    everything = month.series()

    def one(window: int, text: str) -> None:
        path = texts / f"{window}.om"
        path.write_text(text)
        made = run([str(promtool), "tsdb", "create-blocks-from", "openmetrics", "--quiet", str(path), str(blocks)],
                   timeout=300)  # fmt: skip
        path.unlink()
        if not made.ok:
            raise HistoryError(f"promtool could not write the history's block at {window}: {made.tail()}")

    pool = ThreadPoolExecutor(workers)
    try:
        pending = set()
        for window, text in openmetrics(generated, everything):
            pending.add(pool.submit(one, window, text))
            if len(pending) >= workers * 2:  # keep the texts in memory bounded too
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for future in done:
                    future.result()
        for future in pending:
            future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _remove_held(bucket: Path) -> None:
    """Delete the history's blocks from the (file-system) bucket: a new version, or an upload cut
    short on another day, must not leave two overlapping months with the same labels."""
    for meta in bucket.glob("*/meta.json"):
        try:
            labels = json.loads(meta.read_text()).get("thanos", {}).get("labels", {})
        except (OSError, ValueError):
            continue
        if labels.get("cluster") == CLUSTER:
            shutil.rmtree(meta.parent, ignore_errors=True)


def generate(bucket_config: Path, bucket: Path, *, promtool: Path, thanos: Path, cache: Path, now: float) -> Generated:
    """Write the history into the bucket, unless its marker says it holds this version's; the
    marker goes last, so an interrupted run is redone. The blocks are made once a day per machine
    and kept under ``cache`` (every platform's bucket gets a copy)."""
    marker = bucket / MARKER
    want = Generated(VERSION, end_for(now))
    if marker.is_file():
        try:
            held = Generated(**json.loads(marker.read_text()))
        except (ValueError, TypeError):
            held = None
        if held is not None and held.version == VERSION:
            if not (bucket / INCIDENTS_FILE).is_file():
                write_atomic(bucket / INCIDENTS_FILE, json.dumps(postmortems(held), indent=1) + "\n")
            return held
    made = made_blocks(promtool, cache, want)
    _remove_held(bucket)
    # The uploader records what it uploaded in its directory (thanos.shipper.json) and skips it next
    # time: each bucket is uploaded from a copy of its own.
    with tempfile.TemporaryDirectory(prefix="opslab-history-") as scratch:
        blocks = Path(scratch) / "blocks"
        shutil.copytree(made, blocks, ignore=shutil.ignore_patterns("thanos*"))
        uploaded = run([str(thanos), "tools", "bucket", "upload-blocks", f"--objstore.config-file={bucket_config}",
                        f"--path={blocks}", f'--label=cluster="{CLUSTER}"', "--log.level=warn"],
                       timeout=600)  # fmt: skip
    if not uploaded.ok:
        raise HistoryError(f"thanos could not upload the history's blocks: {uploaded.tail()}")
    if not any(bucket.glob("*/meta.json")):
        raise HistoryError(f"thanos uploaded none of the history's blocks from {made}: {uploaded.tail()}")
    write_atomic(bucket / INCIDENTS_FILE, json.dumps(postmortems(want), indent=1) + "\n")
    write_atomic(marker, json.dumps(asdict(want), indent=2) + "\n")
    return want


def made_blocks(promtool: Path, cache: Path, want: Generated, month: Month = SHOP_PROD) -> Path:
    """The month's TSDB blocks under ``cache``/v<version>-<end>/ (v<version>-<month key>-<end>/ for a
    month other than the platform's), made unless there already. Other entries (other days, other
    versions, scratch of a killed run) go once a day old."""
    name = f"v{want.version}-{want.end}" if month == SHOP_PROD else f"v{want.version}-{month.key}-{want.end}"
    done = cache / name
    if done.is_dir():
        return done
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".making-", dir=cache) as scratch:
        work = Path(scratch)
        (work / "texts").mkdir()
        _import(promtool, want, work / "blocks", work / "texts", month=month)
        try:
            (work / "blocks").rename(done)
        except OSError:
            if not done.is_dir():  # another platform made them meanwhile: theirs are the same
                raise
    day_ago = time.time() - 86400
    for stale in [*cache.glob("v*-*"), *cache.glob(".making-*"), *cache.glob("bucket-*")]:
        # Entries of a day ago stay: another checkout, or a platform started before midnight, may
        # still be copying or making them.
        if stale != done and stale.stat().st_mtime < day_ago:
            shutil.rmtree(stale, ignore_errors=True)
    return done


RAW_DAYS = 14
"""Raw samples a compacted bucket keeps (as the platform's compactor): older data is 5 m and 1 h only."""


def compacted_bucket(month: Month, *, promtool: Path, thanos: Path, cache: Path, now: float) -> Path:
    """A file-system bucket holding ``month`` as Thanos' compactor leaves it after a while: blocks
    compacted, downsampled to 5 m and 1 h, and raw samples older than :data:`RAW_DAYS` days gone.
    Made once a day per machine under ``cache`` (``bucket-...``; serve it read-only: a store
    gateway reads it, nothing else writes it). Another process making it at the same time waits."""
    want = Generated(VERSION, end_for(now), cluster=month.cluster)
    done = cache / f"bucket-v{want.version}-{month.key}-{want.end}"
    if (done / MARKER).is_file():
        return done
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".bucket.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (done / MARKER).is_file():
            return done
        blocks = made_blocks(promtool, cache, want, month)
        with tempfile.TemporaryDirectory(prefix=".making-", dir=cache) as scratch:
            work = Path(scratch)
            shutil.copytree(blocks, work / "blocks", ignore=shutil.ignore_patterns("thanos*"))
            config = work / "bucket.yml"
            config.write_text(f"type: FILESYSTEM\nconfig:\n  directory: {work / 'bucket'}\n")
            steps = [
                ["tools", "bucket", "upload-blocks", f"--objstore.config-file={config}", f"--path={work / 'blocks'}",
                 f'--label=cluster="{month.cluster}"'],
                ["compact", f"--objstore.config-file={config}", f"--data-dir={work / 'compact'}",
                 "--consistency-delay=0s", "--delete-delay=0s", f"--retention.resolution-raw={RAW_DAYS}d",
                 "--retention.resolution-5m=0d", "--retention.resolution-1h=0d", "--compact.concurrency=1",
                 "--downsample.concurrency=1", "--http-address=127.0.0.1:0", "--block-files-concurrency=1"],
            ]  # fmt: skip
            for step in steps:
                done_step = run([str(thanos), *step, "--log.level=warn"], timeout=900)
                if not done_step.ok:
                    raise HistoryError(f"thanos {step[0]} of the {month.cluster} month failed: {done_step.tail()}")
            for mark in (work / "bucket").glob("*/deletion-mark.json"):  # what the compactor deletes next
                shutil.rmtree(mark.parent)
            write_atomic(work / "bucket" / MARKER, json.dumps(asdict(want), indent=2) + "\n")
            (work / "bucket").rename(done)
    return done
