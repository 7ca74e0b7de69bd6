"""Prometheus rules, Alertmanager routing and the Grafana dashboard, checked with the real tools."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from opslab import settings
from opslab.runtime.components.alertmanager import BRIDGE_PLACEHOLDER
from opslab.settings import find_root
from opslab.toolchain.resolve import Toolchain
from opslab.toolchain.versions import load_versions

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "platform" / "prometheus"
DASHBOARD = ROOT / "platform" / "kind" / "grafana" / "shop-slo.json"


@pytest.fixture(scope="module")
def toolchain() -> Toolchain:
    loaded = settings.load(root=find_root(ROOT))
    return Toolchain(load_versions(ROOT / "platform" / "versions.toml"), loaded.paths.cache)


def run(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120, check=False)


def test_every_rule_file_passes_promtool_check(toolchain: Toolchain) -> None:
    files = sorted((PROMETHEUS / "rules").glob("*.yml"))
    assert len(files) >= 3
    result = run(toolchain.require("promtool"), "check", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rule_file_has_unit_tests_that_pass(toolchain: Toolchain) -> None:
    tests = sorted((PROMETHEUS / "tests").glob("*_test.yml"))
    covered = {Path(rule_file).name for test in tests for rule_file in yaml.safe_load(test.read_text())["rule_files"]}
    assert covered == {f.name for f in (PROMETHEUS / "rules").glob("*.yml")}, "a rule file has no promtool tests"
    result = run(toolchain.require("promtool"), "test", "rules", *tests)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_wrong_expectation_makes_promtool_fail(toolchain: Toolchain, tmp_path: Path) -> None:
    """The rule tests can fail: change one expected annotation and promtool reports it."""
    original = (PROMETHEUS / "tests" / "shop_test.yml").read_text()
    broken = original.replace("restarted 6 times", "restarted 7 times").replace(
        "../rules/shop.yml", str(PROMETHEUS / "rules" / "shop.yml")
    )
    assert broken != original
    path = tmp_path / "broken_test.yml"
    path.write_text(broken)
    result = run(toolchain.require("promtool"), "test", "rules", path)
    assert result.returncode != 0 and "restarted 6 times" in result.stdout + result.stderr


def test_alertmanager_configuration_is_valid(toolchain: Toolchain, tmp_path: Path) -> None:
    rendered = (ROOT / "platform" / "alertmanager" / "alertmanager.yml").read_text()
    assert BRIDGE_PLACEHOLDER in rendered
    path = tmp_path / "alertmanager.yml"
    path.write_text(rendered.replace(BRIDGE_PLACEHOLDER, "http://127.0.0.1:18088/alerts"))
    result = run(toolchain.require("amtool"), "check-config", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_dashboard_is_well_formed_and_its_queries_parse(toolchain: Toolchain, tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "opslab-shop" and dashboard["schemaVersion"] >= 36
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels), "panel ids are unique"
    expressions = []
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", f"panel {panel['title']} pins a datasource"
        assert panel["targets"], f"panel {panel['title']} has no query"
        expressions += [t["expr"] for t in panel["targets"]]
    # promtool parses PromQL inside a rules file: each query becomes a recording rule.
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query{i}", "expr": e.replace("$service", ".*")}
                    for i, e in enumerate(expressions)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    result = run(toolchain.require("promtool"), "check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


POLICY = ROOT / "platform" / "policy"
POLICY_SERVER = ROOT / "platform" / "policy-server"


def test_the_agent_policy_passes_its_own_opa_tests(toolchain: Toolchain) -> None:
    result = run(toolchain.require("opa"), "test", POLICY, "--format=json")
    assert result.returncode == 0, result.stdout + result.stderr
    results = json.loads(result.stdout)
    passed = [r["name"] for r in results if not r.get("fail") and not r.get("error") and not r.get("skip")]
    assert len(passed) >= 12, result.stdout


def test_the_agent_policy_tests_can_fail(toolchain: Toolchain, tmp_path: Path) -> None:
    """A policy that forgot the protected-service rule fails its tests (the tests are not vacuous)."""
    text = (POLICY / "agent.rego").read_text()
    broken = text.replace("\tinput.target.name in protected\n", "\tinput.target.name in set()\n")
    assert broken != text
    (tmp_path / "agent.rego").write_text(broken)
    (tmp_path / "agent_test.rego").write_text((POLICY / "agent_test.rego").read_text())
    result = run(toolchain.require("opa"), "test", tmp_path)
    assert result.returncode != 0
    assert "test_scaling_a_protected_service_to_zero_is_denied" in result.stdout


def test_the_agent_policy_is_valid_rego_v1(toolchain: Toolchain) -> None:
    result = run(toolchain.require("opa"), "check", "--strict", POLICY, POLICY_SERVER)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_policy_servers_own_access_rules_pass_their_tests(toolchain: Toolchain) -> None:
    result = run(toolchain.require("opa"), "test", POLICY_SERVER, "--format=json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert len([r for r in json.loads(result.stdout) if not r.get("fail") and not r.get("error")]) >= 6
