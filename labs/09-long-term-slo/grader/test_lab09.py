"""Lab 9 checks: 28-day recording rules evaluated over Thanos at the end of a month the learner has
not seen, and the monthly report's figures against that month's model."""

from __future__ import annotations

import math
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml
from support import RECORDS, Answers, RunThanos, inline, tool

from conftest import Report
from opslab.grading.fixtures import learner_file, python, run_learner
from opslab.grading.rubric import check
from opslab.grading.sandbox import Sandbox
from opslab.primitives.ports import free_port
from opslab.runtime import history

SLI_TOLERANCE = 0.0002
"""Availability and latency SLIs: 0.02 percentage points (the month's 5xx share is about 0.1 %)."""
BUDGET_TOLERANCE = 0.01
"""Budget left and per-week burn: one point of the budget."""


def learner_rules(lab_path: Path) -> list[dict[str, Any]]:
    path = learner_file(lab_path, "rules.yml")
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise AssertionError(f"rules.yml is not YAML: {str(exc).splitlines()[0]}") from None
    return [rule for group in document.get("groups") or [] for rule in group.get("rules") or []]


def evaluated(lab_path: Path, thanos: RunThanos, answers: Answers, record: str) -> dict[str, float]:
    """The record's value per service for the held-out month at its end, as a ruler evaluates it."""
    expressions = inline(learner_rules(lab_path))
    assert record in expressions, f"rules.yml records no {record}"
    named = [other for other in expressions if other != record and f"{other}{{" in expressions[record]]
    assert not named, (f"{record} reads {named[0]} with label matchers: use an earlier record by its bare name "
                       "(its series keep their labels)")  # fmt: skip
    try:
        rows = thanos.instant(expressions[record], answers.end)
    except ValueError as exc:
        raise AssertionError(f"{record} does not evaluate: {exc}") from None
    mine = [r for r in rows if r["metric"].get("cluster") == answers.month.cluster]
    assert mine, (f"{record} has no series with cluster=\"{answers.month.cluster}\" at the month's end: keep the "
                  f"cluster label (by (cluster, service)); it gave {[r['metric'] for r in rows][:3]}")  # fmt: skip
    found: dict[str, float] = {}
    for row in mine:
        service = row["metric"].get("service")
        assert service, f"{record} has a series without a service label: {row['metric']}"
        assert service not in found, f"{record} has two series for {service}: aggregate by (cluster, service)"
        found[service] = float(row["value"][1])
    missing = sorted(set(history.SERVICES) - set(found))
    assert not missing, f"{record} has no value for {missing}"
    return found


def compare(what: str, found: dict[str, float], want: dict[str, float], tolerance: float) -> None:
    """Every service's value within ``tolerance`` of the month's (a missing or NaN value is wrong)."""
    wrong = {s: (round(found[s], 5), round(want[s], 5)) for s in want if not abs(found[s] - want[s]) <= tolerance}
    assert not wrong, f"{what} is off by more than {tolerance:g} for {wrong} (yours, the month's)"


def number(entry: object, key: str, where: str) -> float:
    """``entry[key]`` as a finite number, or a clear failure."""
    value = entry.get(key) if isinstance(entry, dict) else None
    assert isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value), (
        f"{where} has no number {key} (found {value!r})"
    )
    return float(value)


# ---------------------------------------------------------------------- rules


@check(points=2, section="Rules", timeout=60, hint="rules.yml: a group with the three records "
       "(service:sli_availability:ratio_rate28d, service:sli_latency:ratio_rate28d, "
       "service:error_budget_remaining:ratio28d); `promtool check rules rules.yml` must pass.")  # fmt: skip
def test_the_rules_are_valid_and_complete(lab_path: Path) -> None:
    """rules.yml passes promtool check rules and records the three 28-day series"""
    path = learner_file(lab_path, "rules.yml")
    checked = subprocess.run([str(tool("promtool")), "check", "rules", str(path)], capture_output=True, text=True,
                             timeout=30, check=False)  # fmt: skip
    assert checked.returncode == 0, f"promtool check rules fails: {(checked.stderr or checked.stdout).strip()[-300:]}"
    recorded = {str(r.get("record")) for r in learner_rules(lab_path) if "record" in r}
    missing = sorted(set(RECORDS.values()) - recorded)
    assert not missing, f"rules.yml does not record {missing}"
    for rule in learner_rules(lab_path):
        if rule.get("record") in RECORDS.values():
            assert str(rule.get("expr")).strip() != "vector(0)", f"{rule['record']} is still the starter's placeholder"


@check(points=4, section="Rules", timeout=120, hint="Ratios of increases over [28d] by (cluster, service): 1 - 5xx "
       "/ all for availability; the le=\"0.25\" bucket / _count for latency. Thanos serves the old part from "
       "downsampled data, so the window reaches back 28 days.")  # fmt: skip
def test_the_slis_are_right_over_28_days(lab_path: Path, thanos: RunThanos, answers: Answers) -> None:
    """the availability and latency SLIs, evaluated at the end of a held-out month, equal its 28-day SLIs"""
    services = list(history.SERVICES)
    availability = evaluated(lab_path, thanos, answers, RECORDS["availability"])
    compare("service:sli_availability:ratio_rate28d", availability,
            {s: answers.availability(s) for s in services}, SLI_TOLERANCE)  # fmt: skip
    latency = evaluated(lab_path, thanos, answers, RECORDS["latency"])
    compare("service:sli_latency:ratio_rate28d", latency, {s: answers.latency(s) for s in services}, SLI_TOLERANCE)


@check(points=2, section="Rules", timeout=120, hint="Budget remaining = 1 - (1 - availability) / (1 - 0.995); a "
       "record may use an earlier one by its bare name.")  # fmt: skip
def test_the_budget_remaining_is_right(lab_path: Path, thanos: RunThanos, answers: Answers) -> None:
    """the error budget remaining after 28 days equals the held-out month's, for every service"""
    found = evaluated(lab_path, thanos, answers, RECORDS["budget"])
    compare("service:error_budget_remaining:ratio28d", found,
            {s: answers.budget_left(s) for s in history.SERVICES}, BUDGET_TOLERANCE)  # fmt: skip


# ---------------------------------------------------------------------- report


def figures_of(report: Report) -> dict[str, Any]:
    assert not report.problem, report.problem
    services = report.figures.get("services")
    assert isinstance(services, dict) and services, f"report.json has no services: {str(report.figures)[:200]}"
    odd = sorted(name for name, entry in services.items() if not isinstance(entry, dict))
    assert not odd, f"report.json's services {odd} are not objects of figures"
    return report.figures


@check(points=4, section="Report", timeout=180, hint="Query increase(...[28d]) at --end for the --cluster you were "
       "given, with max_source_resolution=5m: raw samples older than 14 days are gone, and a query for raw data "
       "only silently covers part of the month.")  # fmt: skip
def test_the_report_has_each_services_budget(report: Report, answers: Answers) -> None:
    """report.json gives each service's availability and budget left over the month's last 28 days"""
    figures = figures_of(report)
    services = figures["services"]
    missing = sorted(set(history.SERVICES) - set(services))
    assert not missing, f"report.json has no figures for {missing}"
    window = figures.get("window") or {}
    assert isinstance(window, dict) and window.get("end") == answers.iso(answers.end_minute), (
        f"report.json's window ends {window.get('end') if isinstance(window, dict) else window!r}, not at --end "
        f"{answers.iso(answers.end_minute)}"
    )
    for key, want, tolerance in (("budget_left", answers.budget_left, BUDGET_TOLERANCE),
                                 ("availability", answers.availability, SLI_TOLERANCE),
                                 ("latency", answers.latency, SLI_TOLERANCE)):  # fmt: skip
        found = {s: number(services[s], key, f"report.json's {s}") for s in history.SERVICES}
        compare(key, found, {s: want(s) for s in history.SERVICES}, tolerance)
    for key, want in (("requests", lambda s: answers.tally(s).requests), ("failed", lambda s: answers.tally(s).errors)):
        found = {s: number(services[s], key, f"report.json's {s}") for s in history.SERVICES}
        wrong = {s: (found[s], want(s)) for s in history.SERVICES if not abs(found[s] - want(s)) <= 0.01 * want(s) + 5}
        assert not wrong, f"{key} is more than 1 % off for {wrong} (yours, the month's)"


@check(points=4, section="Report", timeout=180, hint="An incident's cost: the increase of its service's 5xx over "
       "[end - start] read at its end, divided by the budget (1 - objective) x the service's 28-day requests; leave "
       "out incidents that started before the window.")  # fmt: skip
def test_the_report_costs_each_incident(report: Report, answers: Answers) -> None:
    """report.json gives each incident of the window its share of the 28-day error budget (and leaves the rest out)"""
    listed = figures_of(report).get("incidents")
    assert isinstance(listed, list), "report.json has no incidents list"
    by_id = {str(i.get("id")): i for i in listed if isinstance(i, dict)}
    inside = answers.in_window()
    outside = sorted({i.id for i in answers.month.incidents} - {i.id for i in inside})
    missing = sorted({i.id for i in inside} - set(by_id))
    assert not missing, f"report.json leaves out incidents of the window: {missing}"
    extra = sorted(set(by_id) & set(outside))
    assert not extra, f"report.json costs incidents that did not start in the 28-day window: {extra}"
    wrong = {}
    for incident in inside:
        want, found = answers.cost(incident), number(by_id[incident.id], "budget_burned", f"incident {incident.id}")
        if not abs(found - want) <= 0.1 * want + 0.005:
            wrong[incident.id] = (round(found, 4), round(want, 4))
    assert not wrong, f"budget_burned is more than 10 % off for {wrong} (yours, the month's)"


@check(points=3, section="Report", timeout=180, hint="Split the window into four weeks from its start (week 1 is "
       "the oldest); a week's burn is its 5xx increase (increase[7d] at the week's end) over the 28-day budget.")  # fmt: skip
def test_the_report_finds_each_services_worst_week(report: Report, answers: Answers) -> None:
    """report.json names each service's worst week of the four and the share of the budget it burned"""
    services = figures_of(report)["services"]
    wrong = {}
    for incident in answers.in_window():  # services whose worst week an incident decides
        weeks = answers.weeks(incident.service)
        worst = max(range(4), key=weeks.__getitem__)
        if sorted(weeks)[-2] > 0.7 * weeks[worst]:
            continue  # two weeks too close to call
        given = services.get(incident.service, {}).get("worst_week") or {}
        week = given.get("week") if isinstance(given, dict) else None
        burned = given.get("budget_burned") if isinstance(given, dict) else None
        burned = float(burned) if isinstance(burned, int | float) else float("nan")
        if week != worst + 1 or not abs(burned - weeks[worst]) <= BUDGET_TOLERANCE + 0.05 * weeks[worst]:
            wrong[incident.service] = ((week, round(burned, 3)), (worst + 1, round(weeks[worst], 3)))
    assert not wrong, f"worst_week is wrong for {wrong} ((week, burned) yours, the month's; week 1 is the oldest)"


def percent(value: float) -> str:
    return f"{100 * value:.1f}"


@check(points=3, section="Report", timeout=180, hint="report.md: a table with a row per service (its budget left "
       "in %, one decimal, as report.json) and a row per incident of the window with its cost; say which window.")  # fmt: skip
def test_the_markdown_report_says_the_same(report: Report, answers: Answers) -> None:
    """report.md names the window, each service with its budget left and each incident with its cost, as report.json"""
    figures = figures_of(report)
    text = report.markdown
    assert text.strip(), "report.md is missing or empty"
    window_end = answers.iso(answers.end_minute)[:10]
    assert window_end in text, f"report.md does not name the window (it ends {window_end})"
    rows = [line for line in text.splitlines() if line.lstrip().startswith("|")]

    def shows(name: str, value: float) -> bool:
        """Some table row names ``name`` in a cell and shows ``value`` as a percentage, one decimal."""
        shown = re.escape(percent(value))
        for row in rows:
            cells = [c.strip().strip("*`_ ") for c in row.strip().strip("|").split("|")]
            if name in cells and re.search(rf"(?<![\d.]){shown}\s*%", row):
                return True
        return False

    for service, own in figures["services"].items():
        assert any(service in r for r in rows), f"report.md has no table row for {service}"
        budget = number(own, "budget_left", f"report.json's {service}")
        assert shows(service, budget), (
            f"report.md has no row for {service} that shows its budget left as {percent(budget)} %"
        )
    for incident in figures.get("incidents") or []:
        name = str(incident.get("id")) if isinstance(incident, dict) else ""
        cost = number(incident, "budget_burned", f"incident {name}")
        assert shows(name, cost), f"report.md has no row for incident {name} that shows its cost as {percent(cost)} %"


# ---------------------------------------------------------------------- robustness


@check(points=1, section="Robustness", timeout=90, hint="Catch the HTTP client's errors and bad arguments: one line "
       "on stderr naming what was wrong, a non-zero exit, no report written.")  # fmt: skip
def test_bad_input_is_one_clear_line(lab_path: Path, answers: Answers, sandbox: Sandbox) -> None:
    """an unreachable querier or an --end that is not a time gives a one-line error, no traceback and no report"""
    work = sandbox.scratch / "bad-input"
    work.mkdir(parents=True, exist_ok=True)
    incidents = answers.incidents_file(work / "incidents.json")
    slo = str(learner_file(lab_path, "slo.py"))
    base = ["report", "--cluster", answers.month.cluster, "--incidents", str(incidents)]
    closed = f"127.0.0.1:{free_port()}"
    cases = {
        "a querier nothing listens on": (closed, [*base, "--url", f"http://{closed}",
                                                  "--end", answers.iso(answers.end_minute), "--out", str(work / "a")]),
        "an --end that is not a time": ("last tuesday", [*base, "--url", "http://127.0.0.1:9", "--end", "last tuesday",
                                                         "--out", str(work / "b")]),
    }  # fmt: skip
    for what, (named, args) in cases.items():
        run = run_learner([python(), slo, *args], cwd=lab_path, timeout=60, what="slo.py", sandbox=sandbox)
        said = run.stderr.strip()
        assert run.returncode != 0, f"with {what}, slo.py exited 0"
        assert "Traceback" not in said, f"with {what}, slo.py printed a traceback: {said.splitlines()[-1:]}"
        last = said.splitlines()[-1] if said else ""
        assert named in last, f"with {what}, slo.py's last line does not name {named!r}: {last[:200]!r}"
        out = Path(args[-1])
        assert not (out / "report.json").exists(), f"with {what}, slo.py still wrote a report"
