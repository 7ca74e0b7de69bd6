"""Lab 3 checks: the exporter against ground truth, the SLO rules with promtool, and the rules
live in a Prometheus of the run's own, fed by a pipeline whose lag the grader sets."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml
from support import (
    ALERTS,
    FAST_ALERT,
    RECORDS,
    Case,
    Exporter,
    Pipeline,
    RunPrometheus,
    bootstrap,
    failures_of,
    in_fixed_order,
    promtool_passes,
    start_exporter,
    tool,
    value_of,
)  # fmt: skip

from opslab.grading.fixtures import LearnerError, eventually, learner_file, python, run_learner
from opslab.grading.rubric import check
from opslab.grading.sandbox import Sandbox

REQUIRED = {
    "kafka_topic_partition_current_offset": {"topic", "partition"},
    "kafka_consumergroup_current_offset": {"group", "topic", "partition"},
    "kafka_consumergroup_lag": {"group", "topic", "partition"},
}
ERRORS = "kafka_exporter_scrape_errors_total"


def per_partition(exporter: Exporter, name: str, topic: str, group: str | None = None) -> dict[int, float]:
    found = {}
    for family in exporter.scrape().values():
        for sample in family.samples:
            labels = sample.labels
            if sample.name == name and labels.get("topic") == topic and (group is None or labels.get("group") == group):
                found[int(labels.get("partition", -1))] = float(sample.value)
    return found


# ---------------------------------------------------------------------- exporter


@check(points=2, section="Exporter", timeout=60, hint="python exporter.py --bootstrap HOST:PORT --port N serves "
       "/metrics on 127.0.0.1:N, with kafka_exporter_up 1 when a scrape could read Kafka.")  # fmt: skip
def test_the_exporter_serves_its_health(exporter: Exporter) -> None:
    """/metrics answers, and kafka_exporter_up is 1 while Kafka is reachable"""
    families = exporter.scrape()
    up = families.get("kafka_exporter_up")
    assert up is not None, "kafka_exporter_up is not exported"
    assert up.type == "gauge", f"kafka_exporter_up is a {up.type} metric, not a gauge"
    assert value_of(families, "kafka_exporter_up") == 1, (
        f"kafka_exporter_up is {value_of(families, 'kafka_exporter_up')} although Kafka is reachable"
    )


@check(points=3, section="Exporter", timeout=60, hint="Offsets and lag are gauges labelled group/topic/partition; "
       "counters end in _total; every metric has HELP text.")  # fmt: skip
def test_metrics_are_typed_named_and_documented(exporter: Exporter, ground_truth: Pipeline) -> None:
    """metrics have the right names, types, labels and help text"""
    families = eventually(lambda: (f := exporter.scrape()) and "kafka_consumergroup_lag" in f and f, 20) or {}
    for name, labels in REQUIRED.items():
        family = families.get(name)
        assert family is not None, f"{name} is not exported"
        assert family.type == "gauge", f"{name} is a {family.type} metric; it goes up and down: a gauge"
        assert family.samples, f"{name} has no samples"
        for sample in family.samples:
            assert labels <= set(sample.labels), f"{name} is missing labels {sorted(labels - set(sample.labels))}"
    for family in families.values():
        if family.name.startswith(("python_", "process_")):
            continue
        assert family.help.strip(), f"{family.name} has no HELP text"
        if family.type == "counter":
            bad = [s.name for s in family.samples if not s.name.endswith(("_total", "_created"))]
            assert not bad, f"counter {bad[0]} does not end in _total"


@check(points=3, section="Exporter", timeout=60, hint="lag = end offset (high watermark) - committed offset, per "
       "group, topic and partition, read through the admin API; discover every consumer group.")  # fmt: skip
def test_lag_matches_kafka(exporter: Exporter, ground_truth: Pipeline) -> None:
    """lag and offsets match what Kafka says, for a consumer group the exporter was not told about"""
    topic, group = ground_truth.topic, ground_truth.worker
    lag = eventually(
        lambda: (v := per_partition(exporter, "kafka_consumergroup_lag", topic, group)) and len(v) == 2 and v, 20
    )
    assert lag, f"no lag for consumer group {group} on topic {topic} (2 partitions) within 20 s"
    assert lag == {0: 12.0, 1: 0.0}, f"lag per partition is {lag}, Kafka says {{0: 12, 1: 0}}"
    ends = per_partition(exporter, "kafka_topic_partition_current_offset", topic)
    assert ends == {0: 17.0, 1: 9.0}, f"end offsets {ends}, Kafka says {{0: 17, 1: 9}}"
    committed = per_partition(exporter, "kafka_consumergroup_current_offset", topic, group)
    assert committed == {0: 5.0, 1: 9.0}, f"committed offsets {committed}, Kafka says {{0: 5, 1: 9}}"


@check(points=1, section="Exporter", timeout=60, hint="Read Kafka in your Collector's collect(), at every scrape: "
       "values cached or refreshed by a background loop are stale when Prometheus reads them.")  # fmt: skip
def test_values_are_read_at_scrape_time(exporter: Exporter, ground_truth: Pipeline) -> None:
    """a scrape shows what Kafka says at that moment (messages produced just before it count)"""
    topic, group = ground_truth.topic, ground_truth.worker
    eventually(lambda: len(per_partition(exporter, "kafka_consumergroup_lag", topic, group)) == 2, 20)
    ground_truth.produce({1: 4})
    ends = per_partition(exporter, "kafka_topic_partition_current_offset", topic)
    lag = per_partition(exporter, "kafka_consumergroup_lag", topic, group)
    assert ends.get(1) == ground_truth.ends[1], (
        f"right after 4 messages were produced, the end offset of partition 1 is {ends.get(1)}, not {ground_truth.ends[1]}"
    )
    assert lag.get(1) == 4, f"right after 4 messages were produced, the lag of partition 1 is {lag.get(1)}, not 4"
    ground_truth.commit(group, {1: ground_truth.ends[1]})
    lag = per_partition(exporter, "kafka_consumergroup_lag", topic, group)
    assert lag.get(1) == 0, f"right after the group caught up, the lag of partition 1 is {lag.get(1)}, not 0"


@check(points=2, section="Exporter", timeout=90, hint="Catch Kafka errors in collect(): still answer /metrics, with "
       f"kafka_exporter_up 0 and {ERRORS} counting the failed scrapes.")  # fmt: skip
def test_kafka_down_is_reported_not_crashed(lab_path: Path, closed_port: int, sandbox: Sandbox, tmp_path: Path) -> None:
    """with Kafka unreachable the exporter still answers, says kafka_exporter_up 0 and counts the errors"""
    down = start_exporter(lab_path, f"127.0.0.1:{closed_port}", tmp_path / "down.log", sandbox)
    try:
        first = down.scrape(timeout=30)
        second = down.scrape(timeout=30)
        assert value_of(second, "kafka_exporter_up") == 0, (
            f"with Kafka down, kafka_exporter_up is {value_of(second, 'kafka_exporter_up')}, not 0"
        )
        before, after = value_of(first, ERRORS), value_of(second, ERRORS)
        assert before is not None and after is not None, f"{ERRORS} is not exported"
        assert after > before, f"{ERRORS} stayed at {after} over two failed scrapes"
        assert down.proc.poll() is None, f"the exporter exited: {down.tail()}"
    finally:
        down.stop()


@check(points=1, section="Exporter", timeout=60, hint="Bad arguments (--port abc, --port 70000, a port in use): "
       "exit non-zero with one line naming the port, no traceback.")  # fmt: skip
def test_bad_arguments_fail_clearly(lab_path: Path, sandbox: Sandbox) -> None:
    """a bad or busy --port is refused with a one-line error naming it"""
    script = learner_file(lab_path, "exporter.py")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        for port in ("not-a-port", "70000", str(busy.getsockname()[1])):
            result = run_learner(
                [python(), str(script), "--bootstrap", bootstrap(), "--port", port], cwd=lab_path, timeout=20,
                what="exporter.py", sandbox=sandbox,
            )  # fmt: skip
            assert result.returncode != 0, f"exporter.py accepted --port {port}"
            assert "Traceback" not in result.stderr, f"exporter.py --port {port} crashed: {result.tail()}"
            assert "port" in result.stderr.lower(), (
                f"the error for --port {port} does not name the port: {result.tail()}"
            )


# ---------------------------------------------------------------------- rules


def rule_names(rules: Path) -> tuple[set[str], dict[str, str]]:
    try:
        spec = yaml.safe_load(rules.read_text()) or {}
    except yaml.YAMLError as exc:
        raise LearnerError(f"rules.yml is not valid YAML: {exc}") from None
    records, alerts = set(), {}
    for group in spec.get("groups") or []:
        for rule in group.get("rules") or []:
            if "record" in rule:
                records.add(rule["record"])
            if "alert" in rule:
                alerts[rule["alert"]] = str((rule.get("labels") or {}).get("severity", ""))
    return records, alerts


@check(points=2, section="Rules", timeout=60, hint="rules.yml records orders:consumer_lag:sum and "
       "orders:lag_slo_bad:ratio_rate{25s,150s,5m,30m}, and alerts OrdersLagBudgetBurnFast (severity critical) and "
       "OrdersLagBudgetBurnSlow (severity warning); `promtool check rules rules.yml` passes.")  # fmt: skip
def test_rules_define_the_slo_and_pass_promtool(lab_path: Path) -> None:
    """rules.yml records the SLI and burn ratios, defines both alerts, and passes promtool check rules"""
    rules = learner_file(lab_path, "rules.yml")
    result = run_learner([tool("promtool"), "check", "rules", str(rules)], cwd=lab_path, timeout=60, what="promtool")
    assert result.returncode == 0, f"promtool check rules: {result.tail()}"
    records, alerts = rule_names(rules)
    missing = [r for r in RECORDS if r not in records]
    assert not missing, f"rules.yml does not record {', '.join(missing)}"
    for alert, severity in ALERTS.items():
        assert alert in alerts, f"rules.yml has no alert {alert}"
        assert alerts[alert] == severity, f"{alert} has severity {alerts[alert]!r}, not {severity}"


def break_page(rules: Path, target: Path, template: str) -> None:
    """A copy of ``rules`` whose page's expression is ``template`` (``{expr}``: the original).

    "always fires" keeps the page exactly as it was where it fired (same labels and value), so only
    a test that expects it quiet can notice; "never fires" only a test that expects it to fire."""
    spec = yaml.safe_load(rules.read_text())
    for group in spec.get("groups") or []:
        for rule in group.get("rules") or []:
            if rule.get("alert") == FAST_ALERT:
                rule["expr"] = template.format(expr=str(rule.get("expr", "")).strip())
    target.write_text(yaml.safe_dump(spec, sort_keys=False))


@check(points=2, section="Rules", timeout=90, hint=f"rules_test.yml must pass `promtool test rules` and test "
       f"{FAST_ALERT} both ways: firing on a backlog (exp_alerts with an alert) and quiet when the pipeline keeps up "
       "(exp_alerts: []). Tests that cannot fail prove nothing.")  # fmt: skip
def test_your_rule_tests_pass_and_catch_a_broken_page(lab_path: Path, tmp_path: Path) -> None:
    """rules_test.yml passes, and fails against a page that never fires and against one that always fires"""
    tests = learner_file(lab_path, "rules_test.yml")
    rules = learner_file(lab_path, "rules.yml")
    for what, template in (("", ""), ("never fires", "vector(0) > 1"), ("always fires", "({expr}) or on() vector(1)")):
        copy = tmp_path / (what.replace(" ", "-") or "as-written")
        copy.mkdir()
        in_fixed_order(tests, rules, copy / tests.name)
        if template:
            break_page(rules, copy / "rules.yml", template)
        else:
            shutil.copy(rules, copy / "rules.yml")
        result = run_learner([tool("promtool"), "test", "rules", tests.name], cwd=copy, timeout=60, what="promtool")
        if not what:
            assert result.returncode == 0, f"promtool test rules (recording groups evaluated first): {result.tail()}"
        else:
            assert result.returncode != 0, f"your rule tests still pass when {FAST_ALERT} {what}"


@check(points=3, section="Rules", timeout=240, hint="Page when the bad-sample ratio exceeds 14.4 x 1 % over BOTH 5m "
       "and 25s; open a ticket when it exceeds 6 x 1 % over BOTH 30m and 150s; count only group orders-worker on "
       "topic orders; orders:consumer_lag:sum sums lag over partitions.")  # fmt: skip
def test_the_alerts_behave_on_held_out_series(lab_path: Path, tmp_path: Path, heldout_cases: list[Case]) -> None:
    """both alerts fire and stay quiet as they should on held-out series (thresholds and windows, both sides)"""
    rules = learner_file(lab_path, "rules.yml").resolve()
    failures = []
    summed = promtool_passes(
        rules, ((0, "orders-worker", "100x20"), (1, "orders-worker", "50x20")),
        {"promql_expr_test": [{"expr": "orders:consumer_lag:sum", "eval_time": "1m",
                               "exp_samples": [{"labels": 'orders:consumer_lag:sum{group="orders-worker"}', "value": 150}]}]},
        tmp_path / "sum.yml",
    )  # fmt: skip
    if not summed:
        failures.append('orders:consumer_lag:sum{group="orders-worker"} is not the lag summed over partitions')
    failures += failures_of(rules, heldout_cases, tmp_path)
    assert not failures, "; ".join(failures[:4]) + (f" (and {len(failures) - 4} more)" if len(failures) > 4 else "")


# ---------------------------------------------------------------------- live


def lag_sum(prometheus: RunPrometheus) -> float | None:
    found = prometheus.query('orders:consumer_lag:sum{group="orders-worker"}')
    return float(found[0]["value"][1]) if found else None


@check(points=2, section="Live", timeout=90, hint="Prometheus scrapes your exporter and evaluates your rules: "
       "orders:consumer_lag:sum must equal the lag kafka-consumer-groups shows for orders-worker.")  # fmt: skip
def test_prometheus_records_the_sli_from_your_exporter(prometheus: RunPrometheus, orders: Pipeline) -> None:
    """a Prometheus scraping your exporter records orders:consumer_lag:sum, equal to the real lag"""
    up = eventually(lambda: prometheus.query('up{job="kafka-exporter"} == 1'), 30)
    assert up, "Prometheus could not scrape the exporter"
    recorded = eventually(lambda: lag_sum(prometheus) is not None, 40)
    assert recorded, "orders:consumer_lag:sum has no value for orders-worker within 40 s"
    assert eventually(lambda: lag_sum(prometheus) == 60, 20), (
        f"orders:consumer_lag:sum is {lag_sum(prometheus)}, but orders-worker is 60 messages behind (30 + 30)"
    )


def page_can_fire(lab_path: Path, heldout_cases: list[Case], tmp_path: Path) -> None:
    """A control proves nothing about a page that can never fire: check that first (fast)."""
    rules = learner_file(lab_path, "rules.yml").resolve()
    backlog = [c for c in heldout_cases if FAST_ALERT in c.fires][:1]
    if not backlog or failures_of(rules, backlog, tmp_path):
        raise AssertionError(f"{FAST_ALERT} does not fire even on a sustained backlog, so its silence proves nothing")


@check(points=2, section="Live", timeout=120, hint="Without a fault the orders pipeline keeps up (60 messages "
       "behind, under the SLO's 100; another group far behind): the page must not fire (a false positive).")  # fmt: skip
def test_no_page_without_a_fault(
    prometheus: RunPrometheus, orders: Pipeline, lab_path: Path, heldout_cases: list[Case], tmp_path: Path
) -> None:
    """with the pipeline within its SLO (and another group far behind), the page stays quiet"""
    page_can_fire(lab_path, heldout_cases, tmp_path)
    assert eventually(lambda: lag_sum(prometheus) is not None, 40), "orders:consumer_lag:sum is not recorded"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert not prometheus.firing(FAST_ALERT), f"{FAST_ALERT} fired without any fault"
        time.sleep(2)


@check(points=3, section="Live", timeout=150, hint="When orders-worker falls hundreds of messages behind, your page "
       "should fire within about a minute.")  # fmt: skip
def test_the_page_fires_when_orders_pile_up(
    prometheus: RunPrometheus, orders: Pipeline, lab_path: Path, heldout_cases: list[Case], tmp_path: Path
) -> None:
    """with orders-worker stalled and orders piling up, the page fires"""
    page_can_fire(lab_path, heldout_cases, tmp_path)
    orders.produce({0: 400, 1: 400})  # the worker commits nothing more: 860 messages behind
    fired = eventually(lambda: prometheus.firing(FAST_ALERT), 100, interval=2)
    assert fired, f"{FAST_ALERT} did not fire within 100 s of orders-worker falling {lag_sum(prometheus)} behind"


# ---------------------------------------------------------------------- dashboard


@check(points=2, section="Dashboard", timeout=60, hint="dashboard.json: a Grafana dashboard whose panels (each with "
       "a type and a title) query kafka_consumergroup_lag and your orders:lag_slo recording rules.")  # fmt: skip
def test_the_dashboard_is_valid_and_its_queries_parse(lab_path: Path, tmp_path: Path) -> None:
    """dashboard.json is a Grafana dashboard whose queries parse and show the lag and the SLO"""
    try:
        dashboard = json.loads(learner_file(lab_path, "dashboard.json").read_text())
    except ValueError as exc:
        raise LearnerError(f"dashboard.json is not valid JSON: {exc}") from None
    panels: list[dict[str, Any]] = [p for p in dashboard.get("panels") or [] if isinstance(p, dict)]
    untyped = [p.get("title", "?") for p in panels if not p.get("type") or not p.get("title")]
    assert not untyped, f"panels without a type or title: {untyped}"
    expressions = [t.get("expr", "") for p in panels for t in p.get("targets") or []]
    assert expressions, "the dashboard has no panel with a query"
    assert any(re.search(r"\bkafka_consumergroup_lag\b", e) for e in expressions), (
        "no panel shows kafka_consumergroup_lag"
    )
    assert any("orders:lag_slo" in e for e in expressions), "no panel shows the SLO (an orders:lag_slo recording rule)"
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:q{i}", "expr": e}
                                                        for i, e in enumerate(expressions)]}]}  # fmt: skip
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run([tool("promtool"), "check", "rules", str(path)], capture_output=True, text=True,
                            timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, (
        f"a dashboard query does not parse: {(result.stdout + result.stderr).strip().splitlines()[-1]}"
    )
