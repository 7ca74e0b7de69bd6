"""Helpers shared by lab 3's checks and fixtures: the learner's exporter, a private orders
pipeline in Kafka, and a Prometheus of the grading run's own.

Isolation: the live checks never touch the shop or the platform's Prometheus. The run creates
its own topic and consumer groups in Kafka (``grading-<run>-...``), and its own Prometheus that
scrapes the learner's exporter and evaluates the learner's rules. That Prometheus relabels the
run's topic to ``orders`` and its groups to ``orders-worker`` and ``analytics``, so the learner's
rules (written for the shop) see a pipeline whose lag the grader sets exactly, and nothing of
other runs or of the shop's real traffic.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from opslab.grading import isolation
from opslab.grading.fixtures import LearnerError, learner_file, python, start_learner, stop_learner
from opslab.grading.sandbox import Sandbox
from opslab.primitives.ports import free_port
from opslab.settings import load as load_settings
from opslab.toolchain.resolve import Toolchain
from opslab.toolchain.versions import load_versions

FAST_ALERT, SLOW_ALERT = "OrdersLagBudgetBurnFast", "OrdersLagBudgetBurnSlow"
RECORDS = ("orders:consumer_lag:sum", "orders:lag_slo_bad:ratio_rate25s", "orders:lag_slo_bad:ratio_rate150s",
           "orders:lag_slo_bad:ratio_rate5m", "orders:lag_slo_bad:ratio_rate30m")  # fmt: skip
ALERTS = {FAST_ALERT: "critical", SLOW_ALERT: "warning"}
_quiet = logging.getLogger("opslab.grading.lab03.kafka")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


def tool(name: str) -> str:
    settings = load_settings()
    toolchain = Toolchain(load_versions(settings.paths.platform / "versions.toml"), settings.paths.cache)
    return str(toolchain.require(name))


def bootstrap() -> str:
    value = os.environ.get("OPSLAB_KAFKA_BOOTSTRAP", "")
    if not value:
        pytest.fail("the platform is not running (no Kafka address): start it with `make up`")
    return value


# ---------------------------------------------------------------------- exposition


@dataclass
class Family:
    name: str
    type: str
    help: str
    samples: list[Sample]


def parse(text: str) -> dict[str, Family]:
    """The exposition, read with prometheus_client's own parser; a malformed one is the learner's error."""
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as exc:
        raise LearnerError(f"/metrics is not valid Prometheus text exposition: {exc}") from None
    return {f.name: Family(f.name, f.type, f.documentation, list(f.samples)) for f in families}


def value_of(families: dict[str, Family], name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` whose labels include ``labels`` (None if there is none)."""
    for family in families.values():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


class Exporter:
    """A running exporter.py."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def tail(self, lines: int = 3) -> str:
        text = self.log.read_text(errors="replace").strip().splitlines() if self.log.is_file() else []
        return " | ".join(line.strip()[:200] for line in text[-lines:]) or "(no output)"

    def scrape(self, timeout: float = 15) -> dict[str, Family]:
        try:
            response = httpx.get(self.url, timeout=timeout)
        except httpx.HTTPError as exc:
            raise LearnerError(f"exporter.py did not answer /metrics within {timeout:.0f} s ({exc})") from None
        if response.status_code != 200:
            raise LearnerError(f"/metrics answered {response.status_code}")
        return parse(response.text)

    def stop(self) -> None:
        stop_learner(self.proc, grace=5)


def start_exporter(lab_path: Path, kafka: str, log: Path, sandbox: Sandbox) -> Exporter:
    script = learner_file(lab_path, "exporter.py")
    port = free_port()
    proc = start_learner(
        [python(), str(script), "--bootstrap", kafka, "--port", str(port)], cwd=lab_path, log=log,
        sandbox=sandbox, env={"OPSLAB_KAFKA_BOOTSTRAP": kafka}, what="exporter.py",
    )  # fmt: skip
    exporter = Exporter(proc, port, log)
    # A scrape may take a few seconds when Kafka is unreachable (the exporter waits on its own
    # timeouts); Prometheus allows 10 s per scrape by default, so the probe does too.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LearnerError(f"exporter.py exited with status {proc.returncode}: {exporter.tail()}")
        try:
            if httpx.get(exporter.url, timeout=10).status_code == 200:
                return exporter
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    exporter.stop()
    raise LearnerError(f"exporter.py did not answer on {exporter.url} within 30 s: {exporter.tail()}")


# ---------------------------------------------------------------------- Kafka


class Pipeline:
    """A topic and consumer groups of the run, whose offsets the grader sets exactly."""

    def __init__(self, kafka: str, run_id: str, name: str, partitions: int = 2) -> None:
        prefix = isolation.topic_prefix(run_id)
        self.kafka, self.topic = kafka, f"{prefix}{name}"
        self.worker, self.analytics = f"{prefix}{name}-worker", f"{prefix}{name}-analytics"
        self.partitions = partitions
        self.admin = AdminClient({"bootstrap.servers": kafka, "logger": _quiet})
        for future in self.admin.create_topics(
            [NewTopic(self.topic, num_partitions=partitions, replication_factor=1)]
        ).values():
            future.result(30)
        self.producer = Producer({"bootstrap.servers": kafka, "logger": _quiet, "linger.ms": 5})
        self.ends = dict.fromkeys(range(partitions), 0)

    def produce(self, per_partition: dict[int, int]) -> None:
        for partition, count in per_partition.items():
            for i in range(count):
                self.producer.produce(
                    self.topic, f"order-{partition}-{self.ends[partition] + i}".encode(), partition=partition
                )
            self.ends[partition] += count
        if self.producer.flush(30) != 0:
            raise RuntimeError("Kafka did not take the grader's messages within 30 s")

    def commit(self, group: str, offsets: dict[int, int]) -> None:
        consumer = Consumer({"bootstrap.servers": self.kafka, "group.id": group, "enable.auto.commit": False,
                             "logger": _quiet})  # fmt: skip
        try:
            consumer.commit(offsets=[TopicPartition(self.topic, p, o) for p, o in offsets.items()], asynchronous=False)
        finally:
            consumer.close()

    def lag_to(self, group: str, lag: dict[int, int]) -> None:
        """Commit ``group`` so that partition p lags ``lag[p]`` messages behind its end."""
        self.commit(group, {p: self.ends[p] - lag.get(p, 0) for p in range(self.partitions)})


# ---------------------------------------------------------------------- Prometheus of the run


class RunPrometheus:
    """A Prometheus of the grading run: scrapes the exporter, evaluates the learner's rules."""

    def __init__(self, workdir: Path, exporter: Exporter, rules: Path, pipeline: Pipeline) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "rules.yml").write_text(rules.read_text())
        keep = {"topic": pipeline.topic, "group": f"{pipeline.worker}|{pipeline.analytics}"}
        relabel: list[dict[str, Any]] = [
            {"source_labels": [label], "regex": f"({pattern})?", "action": "keep"} for label, pattern in keep.items()
        ]
        relabel += [
            {"source_labels": ["topic"], "regex": pipeline.topic, "target_label": "topic", "replacement": "orders"},
            {"source_labels": ["group"], "regex": pipeline.worker, "target_label": "group", "replacement": "orders-worker"},
            {"source_labels": ["group"], "regex": pipeline.analytics, "target_label": "group", "replacement": "analytics"},
        ]  # fmt: skip
        config = {
            "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
            "rule_files": [str(workdir / "rules.yml")],
            "scrape_configs": [{
                "job_name": "kafka-exporter",
                "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}],
                "metric_relabel_configs": relabel,
            }],
        }  # fmt: skip
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        self.log = workdir / "prometheus.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [tool("prometheus"), f"--config.file={workdir / 'prometheus.yml'}",
                 f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
                 "--log.level=warn"],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise LearnerError(f"Prometheus would not start with your rules.yml: {self.tail()}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"the run's Prometheus did not become ready within 30 s: {self.tail()}")

    def tail(self) -> str:
        lines = self.log.read_text(errors="replace").strip().splitlines() if self.log.is_file() else []
        return " | ".join(line[:200] for line in lines[-2:]) or "(no output)"

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10).json()
        return list(answer.get("data", {}).get("result", []))

    def firing(self, alert: str) -> bool:
        return bool(self.query(f'ALERTS{{alertname="{alert}", alertstate="firing"}}'))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------------- promtool cases


LAG = 'kafka_consumergroup_lag{{group="{group}", topic="orders", partition="{partition}"}}'


@dataclass(frozen=True)
class Case:
    """A held-out promtool case: lag series, an evaluation time, and which alerts must fire then."""

    name: str
    series: tuple[tuple[int, str, str], ...]  # (partition, group, promtool values)
    at: str
    fires: frozenset[str]
    quiet: frozenset[str]


def load_cases(directory: Path) -> list[Case]:
    cases = []
    for path in sorted(directory.glob("*.yml")):
        for item in yaml.safe_load(path.read_text()) or []:
            series = tuple(
                (int(s["partition"]), s.get("group", "orders-worker"),
                 s["values"] if "values" in s else " ".join([s["repeat"]] * int(s["times"])))
                for s in item["series"]
            )  # fmt: skip
            cases.append(Case(name=item["name"], series=series, at=item["at"],
                              fires=frozenset(item.get("fires", [])), quiet=frozenset(item.get("quiet", []))))  # fmt: skip
    return cases


def evaluation_order(rules: Path) -> list[str]:
    """``rules``' group names, groups without alerts first (file order otherwise).

    Without ``group_eval_order`` promtool evaluates groups in a random order at each step, so an
    alert can read a recording rule's value from the step before and a verdict would flip between
    runs. Prometheus itself gives no order either; the grader fixes the one a learner means."""
    try:
        groups = (yaml.safe_load(rules.read_text()) or {}).get("groups") or []
    except (OSError, yaml.YAMLError, AttributeError):
        return []
    named = [g for g in groups if isinstance(g, dict) and isinstance(g.get("name"), str)]

    def alerts(group: dict[str, Any]) -> bool:
        return any(isinstance(r, dict) and "alert" in r for r in group.get("rules") or [])

    return [g["name"] for g in sorted(named, key=alerts)]


def in_fixed_order(tests: Path, rules: Path, target: Path) -> None:
    """Write ``tests`` to ``target`` with a ``group_eval_order`` when the learner gave none."""
    spec = yaml.safe_load(tests.read_text())
    if isinstance(spec, dict) and not spec.get("group_eval_order") and (order := evaluation_order(rules)):
        spec["group_eval_order"] = order
    target.write_text(yaml.safe_dump(spec, sort_keys=False))


def promtool_passes(rules: Path, series: tuple[tuple[int, str, str], ...], test: dict[str, Any], path: Path) -> bool:
    """Run one promtool unit test against ``rules``; True if it passes."""
    spec = {
        "rule_files": [str(rules)],
        "evaluation_interval": "5s",
        "group_eval_order": evaluation_order(rules),
        "tests": [{
            "interval": "5s",
            "input_series": [{"series": LAG.format(group=g, partition=p), "values": v} for p, g, v in series],
            **test,
        }],
    }  # fmt: skip
    path.write_text(yaml.safe_dump(spec))
    result = subprocess.run([tool("promtool"), "test", "rules", str(path)], capture_output=True, text=True,
                            timeout=60, check=False)  # fmt: skip
    return result.returncode == 0


def failures_of(rules: Path, cases: list[Case], workdir: Path) -> list[str]:
    """What the rules get wrong on ``cases``, one phrase each."""
    wrong = []
    for index, case in enumerate(cases):
        for alert in sorted(case.fires | case.quiet):
            quiet = promtool_passes(
                rules, case.series, {"alert_rule_test": [{"eval_time": case.at, "alertname": alert, "exp_alerts": []}]},
                workdir / f"case-{index}-{alert}.yml",
            )  # fmt: skip
            if alert in case.fires and quiet:
                wrong.append(f"{case.name}: {alert} did not fire at {case.at}")
            if alert in case.quiet and not quiet:
                wrong.append(f"{case.name}: {alert} fired at {case.at}")
    return wrong
