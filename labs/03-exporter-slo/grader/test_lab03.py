"""Lab 3 checks: the exporter against ground truth, the SLO rules with promtool and a live scenario."""

from __future__ import annotations

import ast
import contextlib
import json
import os
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException
from support import Exporter, bootstrap, query, scrape, start_exporter

from opslab.grading.fixtures import LearnerError, eventually, learner_file, python, run_learner
from opslab.grading.rubric import check
from opslab.settings import load as load_settings
from opslab.toolchain.resolve import Toolchain
from opslab.toolchain.versions import load_versions

REQUIRED = {
    "kafka_topic_partition_current_offset": {"topic", "partition"},
    "kafka_consumergroup_current_offset": {"group", "topic", "partition"},
    "kafka_consumergroup_lag": {"group", "topic", "partition"},
}
FAST_ALERT = "OrdersLagBudgetBurnFast"


def promtool() -> str:
    settings = load_settings()
    toolchain = Toolchain(load_versions(settings.paths.platform / "versions.toml"), settings.paths.cache)
    return str(toolchain.require("promtool"))


# ---------------------------------------------------------------------- exporter


@check(
    points=2,
    section="Exporter",
    hint="python exporter.py --bootstrap HOST:PORT --port N must serve /metrics on 127.0.0.1:N.",
)
def test_the_exporter_serves_metrics(exporter: Exporter) -> None:
    """exporter.py serves /metrics on the port it is given"""
    assert httpx.get(exporter.url, timeout=10).status_code == 200


@check(
    points=3,
    section="Exporter",
    hint="Offsets and lag are gauges labelled group/topic/partition; counters end in _total; every metric has HELP text.",
)
def test_metrics_are_typed_named_and_documented(exporter: Exporter) -> None:
    """metrics have the right names, types, labels and help text"""
    families = scrape(exporter.url)
    for name, labels in REQUIRED.items():
        family = families.get(name)
        assert family is not None, f"{name} is not exported"
        assert family.type == "gauge", f"{name} is a {family.type or 'untyped'} metric; it goes up and down: a gauge"
        for _, found, _ in family.samples:
            assert labels <= set(found), f"{name} is missing labels {sorted(labels - set(found))}"
    for family in families.values():
        if family.name.startswith(("python_", "process_")):
            continue
        assert family.help.strip(), f"{family.name} has no HELP text"
        if family.type == "counter":
            bad = [s for s, _, _ in family.samples if not s.endswith(("_total", "_created"))]
            assert not bad, f"counter {bad[0]} does not end in _total"


@check(
    points=3,
    section="Exporter",
    hint="lag = end offset (high watermark) - committed offset, per group, topic and partition, read at scrape time through the admin API.",
)
def test_lag_matches_kafka(exporter: Exporter, ground_truth: dict[str, Any]) -> None:
    """lag and offsets match what Kafka says"""
    topic, group = ground_truth["topic"], ground_truth["group"]

    def values(name: str) -> dict[int, float]:
        family = scrape(exporter.url).get(name)
        found = {}
        for _, labels, value in family.samples if family else []:
            if labels.get("topic") == topic and labels.get("group", group) == group:
                found[int(labels.get("partition", -1))] = value
        return found

    lag = eventually(
        lambda: values("kafka_consumergroup_lag") if len(values("kafka_consumergroup_lag")) == 2 else None, 20
    )
    assert lag, f"no lag for group {group} on topic {topic} (2 partitions) after 20 s"
    assert lag == {p: float(v) for p, v in ground_truth["lag"].items()}, (
        f"lag per partition is {lag}, Kafka says {ground_truth['lag']}"
    )
    ends = values("kafka_topic_partition_current_offset")
    assert ends == {p: float(v) for p, v in ground_truth["end"].items()}, (
        f"end offsets {ends}, Kafka says {ground_truth['end']}"
    )
    committed = values("kafka_consumergroup_current_offset")
    assert committed == {p: float(v) for p, v in ground_truth["committed"].items()}, f"committed offsets {committed}"


@check(
    points=1,
    section="Exporter",
    hint="Write a class with a collect() method that yields metric families, and register it (REGISTRY.register).",
)
def test_the_exporter_uses_a_custom_collector(lab_path: Path) -> None:
    """the exporter is a custom Collector (values computed at scrape time)"""
    try:
        tree = ast.parse(learner_file(lab_path, "exporter.py").read_text())
    except SyntaxError as exc:
        raise LearnerError(f"exporter.py line {exc.lineno}: {exc.msg}") from None
    collectors = [
        node for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        and any(isinstance(f, ast.FunctionDef) and f.name == "collect" and any(isinstance(n, (ast.Yield, ast.YieldFrom)) for n in ast.walk(f)) for f in node.body)
    ]  # fmt: skip
    assert collectors, "no class with a collect() method that yields metrics"
    registers = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "register"]
    assert registers, "the collector is never registered"


@check(
    points=2,
    section="Exporter",
    timeout=90,
    hint="Catch Kafka errors in collect(): still answer /metrics, with kafka_exporter_up 0 or a scrape-error counter.",
)
def test_kafka_down_is_reported_not_crashed(lab_path: Path, closed_port: int, tmp_path: Path) -> None:
    """with Kafka unreachable the exporter still answers and says so"""
    down = start_exporter(lab_path, f"127.0.0.1:{closed_port}", tmp_path / "down.log")
    try:
        families = scrape(down.url)
        up = families.get("kafka_exporter_up")
        errors = sum(v for f in families.values() if "error" in f.name for _, _, v in f.samples)
        reported = (up is not None and any(v == 0 for _, _, v in up.samples)) or errors > 0
        assert reported, "with Kafka down, /metrics neither shows kafka_exporter_up 0 nor counts scrape errors"
        assert down.proc.poll() is None, f"the exporter exited: {down.tail()}"
    finally:
        down.stop()


@check(
    points=1, section="Exporter", hint="Bad arguments: exit non-zero with a message naming the argument, no traceback."
)
def test_bad_arguments_fail_clearly(lab_path: Path) -> None:
    """a bad --port is refused clearly"""
    script = learner_file(lab_path, "exporter.py")
    result = run_learner(
        [python(), str(script), "--bootstrap", bootstrap(), "--port", "not-a-port"],
        cwd=lab_path,
        timeout=20,
        what="exporter.py",
    )
    assert result.returncode != 0, "exporter.py accepted --port not-a-port"
    assert "Traceback" not in result.stderr, f"exporter.py crashed: {result.tail()}"
    assert "port" in result.stderr.lower(), f"the error does not name --port: {result.tail()}"


# ---------------------------------------------------------------------- rules


@check(points=2, section="Rules", hint="promtool check rules rules.yml must pass.")
def test_rules_pass_promtool_check(lab_path: Path) -> None:
    """rules.yml passes promtool check rules"""
    rules = learner_file(lab_path, "rules.yml")
    result = run_learner([promtool(), "check", "rules", str(rules)], cwd=lab_path, timeout=60, what="promtool")
    assert result.returncode == 0, f"promtool check rules: {result.tail()}"


@check(
    points=2,
    section="Rules",
    hint=f"rules_test.yml must pass `promtool test rules` and test {FAST_ALERT} both ways: firing (exp_alerts with an alert) and quiet (exp_alerts: []).",
)
def test_the_learners_rule_tests_pass_and_cover_both_ways(lab_path: Path) -> None:
    """rules_test.yml passes and tests the page both firing and quiet"""
    tests = learner_file(lab_path, "rules_test.yml")
    result = run_learner([promtool(), "test", "rules", str(tests)], cwd=lab_path, timeout=60, what="promtool")
    assert result.returncode == 0, f"promtool test rules: {result.tail()}"
    spec = yaml.safe_load(tests.read_text())
    cases = [c for t in spec.get("tests", []) for c in t.get("alert_rule_test", []) if c.get("alertname") == FAST_ALERT]
    assert any(c.get("exp_alerts") for c in cases), f"no test expects {FAST_ALERT} to fire"
    assert any(not c.get("exp_alerts") for c in cases), f"no test expects {FAST_ALERT} to stay quiet"


LAG = 'kafka_consumergroup_lag{{group="{group}", topic="orders", partition="{partition}"}}'
HIDDEN_CASES = [
    # name, series (partition, group, values), evaluation time, should the page fire?
    (
        "a sustained backlog pages",
        [(0, "orders-worker", "0x12 300x120"), (1, "orders-worker", "0x12 300x120")],
        "2m",
        True,
    ),
    (
        "a backlog that cleared does not page (the short window)",
        [(0, "orders-worker", "0x12 500x18 0x60")],
        "4m",
        False,
    ),
    (
        "a brief blip does not page (the long window)",
        [(0, "orders-worker", "0x60 300x3")],
        "5m20s",
        False,
    ),
    ("a small lag never pages", [(0, "orders-worker", "60x120")], "9m", False),
    ("another consumer group does not count", [(0, "analytics", "900x120")], "9m", False),
]


def promtool_case(rules: Path, series: list[tuple[int, str, str]], test: dict[str, Any], path: Path) -> bool:
    """Run one promtool unit test against the learner's rules; True if it passes."""
    spec = {
        "rule_files": [str(rules)],
        "evaluation_interval": "5s",
        "tests": [{
            "interval": "5s",
            "input_series": [{"series": LAG.format(group=g, partition=p), "values": v} for p, g, v in series],
            **test,
        }],
    }  # fmt: skip
    path.write_text(yaml.safe_dump(spec))
    result = subprocess.run(
        [promtool(), "test", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    return result.returncode == 0


@check(
    points=3,
    section="Rules",
    hint="Page only when the bad-sample ratio exceeds 14.4 x 1 % over BOTH the 5m and 25s windows, for group orders-worker on topic orders; orders:consumer_lag:sum sums lag over partitions.",
)
def test_the_alerts_behave_on_hidden_series(lab_path: Path, tmp_path: Path) -> None:
    """the page fires on a sustained backlog and stays quiet otherwise (hidden promtool tests)"""
    rules = learner_file(lab_path, "rules.yml").resolve()
    failures = []
    summed = promtool_case(
        rules,
        [(0, "orders-worker", "100x20"), (1, "orders-worker", "50x20")],
        {"promql_expr_test": [{"expr": "orders:consumer_lag:sum", "eval_time": "1m",
                               "exp_samples": [{"labels": 'orders:consumer_lag:sum{group="orders-worker"}', "value": 150}]}]},
        tmp_path / "sum.yml",
    )  # fmt: skip
    if not summed:
        failures.append('orders:consumer_lag:sum{group="orders-worker"} is not the lag summed over partitions')
    for index, (name, series, at, fires) in enumerate(HIDDEN_CASES):
        quiet = promtool_case(
            rules, series, {"alert_rule_test": [{"eval_time": at, "alertname": FAST_ALERT, "exp_alerts": []}]},
            tmp_path / f"case-{index}.yml",
        )  # fmt: skip
        if fires and quiet:
            failures.append(f"{name}: {FAST_ALERT} did not fire at {at}")
        if not fires and not quiet:
            failures.append(f"{name}: {FAST_ALERT} fired at {at}")
    assert not failures, "; ".join(failures)


# ---------------------------------------------------------------------- live


@check(
    points=2,
    section="Live",
    timeout=90,
    hint="Prometheus scrapes your exporter (job labs) and your rules load: check orders:consumer_lag:sum in the Prometheus UI.",
)
def test_prometheus_scrapes_the_exporter_and_records_the_sli(loaded: str, prometheus: str) -> None:
    """the platform's Prometheus scrapes the exporter and evaluates the recording rules"""
    up = eventually(lambda: query(prometheus, f'up{{job="labs", grading="{loaded}"}} == 1'), 30)
    assert up, "Prometheus could not scrape the exporter (job labs)"
    recorded = eventually(lambda: query(prometheus, 'orders:consumer_lag:sum{group="orders-worker"}'), 40)
    assert recorded, "orders:consumer_lag:sum has no value for orders-worker"


def firing(prometheus: str) -> bool:
    return bool(query(prometheus, f'ALERTS{{alertname="{FAST_ALERT}", alertstate="firing"}}'))


@check(
    points=2,
    section="Live",
    timeout=120,
    hint="Without a fault, the orders pipeline keeps up: the page must not fire (a false positive).",
)
def test_no_page_without_a_fault(loaded: str, prometheus: str) -> None:
    """with no fault and normal traffic, the page stays quiet (control)"""
    assert eventually(lambda: query(prometheus, "orders:consumer_lag:sum"), 40), "no lag is recorded yet"
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline:
        assert not firing(prometheus), f"{FAST_ALERT} fired without any fault"
        time.sleep(3)


@check(
    points=3,
    section="Live",
    timeout=240,
    hint="Under a slow consumer the lag passes 100 within seconds; your page should fire within about a minute.",
)
def test_the_page_fires_when_orders_pile_up(loaded: str, prometheus: str, kube_api: client.ApiClient) -> None:
    """with orders-worker throttled and checkouts coming, the page fires"""
    custom = client.CustomObjectsApi(kube_api)
    args = ("opslab.dev", "v1alpha1", "shop", "faults")
    name = f"lab3-{uuid.uuid4().hex[:6]}"
    body = {"apiVersion": "opslab.dev/v1alpha1", "kind": "Fault", "metadata": {"name": name},
            "spec": {"type": "slow-consumer", "target": "orders-worker", "messagesPerSecond": 1}}  # fmt: skip
    shop = f"http://127.0.0.1:{os.environ.get('OPSLAB_PORT_SHOP', '18080')}"
    stop = threading.Event()

    def checkouts() -> None:
        with httpx.Client(base_url=shop, timeout=5) as http:
            deadline = time.monotonic() + 200
            while not stop.is_set() and time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    http.post(f"/api/checkout/lab3-{uuid.uuid4().hex[:4]}")
                stop.wait(0.06)

    custom.create_namespaced_custom_object(*args, body)
    load = threading.Thread(target=checkouts, daemon=True)
    load.start()
    try:
        fired = eventually(lambda: firing(prometheus), 150, interval=3)
        assert fired, f"{FAST_ALERT} did not fire within 150 s of the backlog starting"
    finally:
        stop.set()
        load.join(10)
        with contextlib.suppress(ApiException):
            custom.delete_namespaced_custom_object(*args, name)


# ---------------------------------------------------------------------- dashboard


@check(
    points=2,
    section="Dashboard",
    hint="dashboard.json: valid JSON with panels whose targets query kafka_consumergroup_lag and your orders:lag_slo recording rules.",
)
def test_the_dashboard_is_valid_and_its_queries_parse(lab_path: Path, tmp_path: Path) -> None:
    """dashboard.json is a Grafana dashboard whose queries parse"""
    try:
        dashboard = json.loads(learner_file(lab_path, "dashboard.json").read_text())
    except ValueError as exc:
        raise LearnerError(f"dashboard.json is not valid JSON: {exc}") from None
    panels = dashboard.get("panels") or []
    expressions = [t.get("expr", "") for p in panels for t in p.get("targets") or []]
    assert expressions, "the dashboard has no panel with a query"
    assert any("kafka_consumergroup_lag" in e for e in expressions), "no panel shows kafka_consumergroup_lag"
    assert any("orders:lag_slo" in e for e in expressions), "no panel shows the SLO (an orders:lag_slo recording rule)"
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"dashboard:q{i}", "expr": e} for i, e in enumerate(expressions)],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, (
        f"a dashboard query does not parse: {(result.stdout + result.stderr).strip().splitlines()[-1]}"
    )
