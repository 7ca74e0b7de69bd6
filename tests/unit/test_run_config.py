"""A grading run's Alertmanager route and Prometheus files: merged in front of the platform's own and
removed for exactly the runs asked for (tests/integration/test_observability.py loads a route into
the real Alertmanager)."""

from pathlib import Path

import yaml

from opslab.runtime import run_config
from opslab.runtime.components.prometheus import LAB_RULES, LAB_TARGETS
from opslab.settings import load

ROOT = Path(__file__).resolve().parents[2]


def test_a_runs_route_comes_first_and_does_not_continue(tmp_path: Path) -> None:
    settings = load(environ={"OPSLAB_STATE_DIR": str(tmp_path)}, root=ROOT)
    base = (ROOT / "platform" / "alertmanager" / "alertmanager.yml").read_text().replace("ALERT_BRIDGE_PORT", "18088")
    settings.paths.config.mkdir(parents=True)
    (settings.paths.config / run_config.BASE).write_text(base)
    routes = settings.paths.config / run_config.ALERT_ROUTES
    routes.mkdir()
    token = tmp_path / "token"
    token.write_text("secret\n")
    for run in ("g1111111", "g2222222"):
        fragment = {
            "route": {"receiver": f"grading-{run}", "matchers": [f'opslab_run = "{run}"'], "continue": False},
            "receiver": {
                "name": f"grading-{run}",
                "webhook_configs": [
                    {
                        "url": "http://127.0.0.1:1/alerts",
                        "http_config": {"authorization": {"credentials_file": str(token)}},
                    }
                ],
            },
        }
        (routes / f"grading-{run}.yml").write_text(yaml.safe_dump(fragment))
    merged = yaml.safe_load(run_config.render_alertmanager(settings))
    assert [r["receiver"] for r in merged["route"]["routes"][:2]] == ["grading-g1111111", "grading-g2222222"]
    assert merged["route"]["routes"][2]["matchers"] == ['alertname = "Watchdog"'], "the platform's routes follow"
    assert merged["route"]["receiver"] == "kafka-bridge"
    assert {"grading-g1111111", "grading-g2222222", "kafka-bridge"} <= {r["name"] for r in merged["receivers"]}


def test_remove_takes_only_the_runs_named(tmp_path: Path) -> None:
    settings = load(environ={"OPSLAB_STATE_DIR": str(tmp_path), "OPSLAB_PORT_PROMETHEUS": "1099"}, root=ROOT)
    for folder, suffix in ((LAB_RULES, "yml"), (LAB_TARGETS, "json")):
        (settings.paths.config / folder).mkdir(parents=True)
        for run in ("g1111111", "g2222222"):
            (settings.paths.config / folder / f"grading-{run}.{suffix}").write_text("{}")
        (settings.paths.config / folder / f"preview-lab.{suffix}").write_text("{}")
    assert run_config.runs_with_config(settings) == {"g1111111", "g2222222"}
    gone = run_config.remove(settings, {"g1111111"})
    assert sorted(gone) == [f"{LAB_RULES}/grading-g1111111.yml", f"{LAB_TARGETS}/grading-g1111111.json"]
    assert run_config.runs_with_config(settings) == {"g2222222"}
    assert (settings.paths.config / LAB_RULES / "preview-lab.yml").is_file(), "a preview is not a run's"
