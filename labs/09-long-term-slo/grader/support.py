"""Lab 9 grader support: the held-out month in a Thanos of the run's own, and its answers.

The month (heldout/month.toml; an instructor's graders copy may hold another) is written by the platform's
own generator (opslab.runtime.history), compacted once as the platform's compactor would (5 m and
1 h aggregates, raw samples older than 14 days gone) and cached for the day. Beside it the bucket
holds the platform's month (cluster="shop-prod"), so a report that ignores --cluster adds both.
A store gateway and a querier of the run serve them on ports of their own; nothing of the platform's
Thanos is touched. Answers come from the same model, never from the blocks.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from opslab.primitives.ports import free_port
from opslab.runtime import history
from opslab.settings import load as load_settings
from opslab.toolchain.resolve import Toolchain
from opslab.toolchain.versions import load_versions

HELDOUT = Path(__file__).parent / "heldout" / "month.toml"
OBJECTIVE = 0.995
WINDOW_DAYS = 28
WEEK_MINUTES = 7 * history.DAY_MINUTES
RECORDS = {
    "availability": "service:sli_availability:ratio_rate28d",
    "latency": "service:sli_latency:ratio_rate28d",
    "budget": "service:error_budget_remaining:ratio28d",
}


def tool(name: str) -> Path:
    settings = load_settings()
    return Toolchain(load_versions(settings.paths.platform / "versions.toml"), settings.paths.cache).require(name)


def heldout_month() -> history.Month:
    spec = tomllib.loads(HELDOUT.read_text())
    incidents = []
    for one in spec["incident"]:
        hour, minute = (int(x) for x in one["at"].split(":"))
        start = one["day"] * history.DAY_MINUTES + hour * 60 + minute
        incidents.append(history.Incident(one["id"], one["service"], start, int(one["minutes"]),
                                          float(one["error_ratio"]), float(one["slow_ratio"]), one["title"],
                                          int(one.get("code", 500))))  # fmt: skip
    return history.Month(tuple(incidents), spec["cluster"], float(spec.get("not_found_ratio", 0.0)))


def report_end_minute() -> int:
    """The minute of the month the report is asked to end at (data goes on after it)."""
    days = int(tomllib.loads(HELDOUT.read_text()).get("report_end_days", 0))
    return history.minutes() - 1 - days * history.DAY_MINUTES


def prepare_bucket(month: history.Month) -> Path:
    """The run's bucket: the held-out month and the platform's, compacted, cached for the day."""
    settings = load_settings()
    cache = settings.paths.cache / "history"
    now = time.time()
    common = {"promtool": tool("promtool"), "thanos": tool("thanos"), "cache": cache, "now": now}
    # Two buckets' blocks side by side in one directory are one bucket to the store gateway.
    heldout = history.compacted_bucket(month, **common)
    platform = history.compacted_bucket(history.SHOP_PROD, **common)
    joined = cache / f"lab09-{heldout.name}+{platform.name}"
    if not (joined / history.MARKER).is_file():
        scratch = cache / f".making-{joined.name}-{os.getpid()}"
        scratch.mkdir(parents=True, exist_ok=True)
        for source in (heldout, platform):  # hard links: blocks are never written once made
            for meta in source.glob("*/meta.json"):
                shutil.copytree(meta.parent, scratch / meta.parent.name, copy_function=os.link)
        (scratch / history.MARKER).write_text((heldout / history.MARKER).read_text())
        try:
            scratch.rename(joined)
        except OSError:
            if not (joined / history.MARKER).is_file():
                raise
    day_ago = time.time() - 86400
    for stale in cache.glob("lab09-*"):
        if stale != joined and stale.stat().st_mtime < day_ago:
            shutil.rmtree(stale, ignore_errors=True)
    return joined


@dataclass
class Answers:
    """What the held-out month says, from its model."""

    month: history.Month
    generated: history.Generated
    end_minute: int
    """The minute the report's window ends at (its --end)."""

    @property
    def end(self) -> int:
        """--end, in Unix seconds."""
        return self.generated.start + self.end_minute * history.STEP_SECONDS

    def window(self) -> tuple[int, int]:
        return self.end_minute - WINDOW_DAYS * history.DAY_MINUTES + 1, self.end_minute

    def tally(self, service: str) -> history.Tally:
        return self.month.tally(service, *self.window())

    def availability(self, service: str) -> float:
        t = self.tally(service)
        return 1 - t.errors / t.requests

    def latency(self, service: str) -> float:
        t = self.tally(service)
        return 1 - t.slow / t.requests

    def budget_left(self, service: str) -> float:
        return self.tally(service).budget_left(OBJECTIVE)

    def allowed(self, service: str) -> float:
        return (1 - OBJECTIVE) * self.tally(service).requests

    def in_window(self) -> list[history.Incident]:
        first, last = self.window()
        return [i for i in self.month.incidents if first <= i.start_minute <= last]

    def cost(self, incident: history.Incident) -> float:
        last = incident.start_minute + incident.minutes - 1
        return self.month.tally(incident.service, incident.start_minute, last).errors / self.allowed(incident.service)

    def weeks(self, service: str) -> list[float]:
        first, _ = self.window()
        return [self.month.tally(service, first + k * WEEK_MINUTES, first + (k + 1) * WEEK_MINUTES - 1).errors
                / self.allowed(service) for k in range(4)]  # fmt: skip

    def iso(self, minute: int) -> str:
        return history.iso(self.generated.start + minute * history.STEP_SECONDS)

    def incidents_file(self, path: Path) -> Path:
        """The postmortem log the report is given: every incident of the month."""
        path.write_text(json.dumps(history.postmortems(self.generated, self.month), indent=1))
        return path


class RunThanos:
    """A store gateway over the run's bucket and a querier in front of it, on ports of the run."""

    def __init__(self, bucket: Path, workdir: Path, end: int) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "bucket.yml"
        config.write_text(f"type: FILESYSTEM\nconfig:\n  directory: {bucket}\n")
        store_http, store_grpc, query_http, query_grpc = (free_port() for _ in range(4))
        self.url = f"http://127.0.0.1:{query_http}"
        self.logs = [workdir / "store.log", workdir / "query.log"]
        thanos = str(tool("thanos"))
        commands = [
            [thanos, "store", f"--objstore.config-file={config}", f"--data-dir={workdir / 'store'}",
             f"--http-address=127.0.0.1:{store_http}", f"--grpc-address=127.0.0.1:{store_grpc}",
             "--ignore-deletion-marks-delay=0s", "--log.level=warn"],
            [thanos, "query", f"--http-address=127.0.0.1:{query_http}", f"--grpc-address=127.0.0.1:{query_grpc}",
             f"--endpoint=127.0.0.1:{store_grpc}", "--query.auto-downsampling",
             "--query.instant.default.max_source_resolution=1h", "--no-query.partial-response", "--log.level=warn"],
        ]  # fmt: skip
        self.procs: list[subprocess.Popen[bytes]] = []
        env = {**os.environ, "GOGC": "50"}
        for command, log in zip(commands, self.logs, strict=True):
            with log.open("wb") as out:
                self.procs.append(subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env))
        try:
            self._wait_serving(end)
        except BaseException:
            self.stop()
            raise

    def _wait_serving(self, end: int, timeout: float = 120) -> None:
        """Until the querier answers for both months at their ``end`` (the store gateway has loaded
        their blocks)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc, log in zip(self.procs, self.logs, strict=True):
                if proc.poll() is not None:
                    raise RuntimeError(f"the run's Thanos ({log.stem}) stopped: {self.tail(log)}")
            try:
                rows = self.instant("count by (cluster) (shop_http_requests_total)", end)
                clusters = {r["metric"].get("cluster") for r in rows}
                if len(clusters) >= 2:
                    return
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.5)
        raise RuntimeError(
            f"the run's Thanos did not serve the months within {timeout:.0f} s: {self.tail(self.logs[0])}"
        )

    @staticmethod
    def tail(log: Path) -> str:
        lines = log.read_text(errors="replace").strip().splitlines() if log.is_file() else []
        return " | ".join(line[:200] for line in lines[-2:]) or "(no output)"

    def instant(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query as a rule evaluator would send it (the querier's defaults)."""
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.0f}"
        answer = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=60).json()
        if answer.get("status") != "success":
            raise ValueError(answer.get("error", "the querier refused the query"))
        return list(answer["data"]["result"])

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def inline(rules: list[dict[str, Any]]) -> dict[str, str]:
    """Each record's expression with the records it names (bare, as a rule evaluator reads them
    back) replaced by their own expressions, in any order, so each evaluates on its own at one
    instant. A record that names itself, directly or not, is left as it is (it evaluates empty)."""
    own = {str(r["record"]): str(r.get("expr", "")) for r in rules if "record" in r}
    found: dict[str, str] = {}

    def expand(name: str, seen: tuple[str, ...]) -> str:
        expr = own[name]
        for other in own:
            if other == name or other in seen:
                continue
            pattern = rf"(?<![\w:]){re.escape(other)}(?![\w:{{\[])"
            if re.search(pattern, expr):
                inner = expand(other, (*seen, name))
                expr = re.sub(pattern, lambda _, text=inner: f"({text})", expr)
        return expr

    for name in own:
        found[name] = expand(name, ())
    return found
