"""`opslab scenario run NAME`: load, inject, observe, roll back, verify recovery, report.

1. The platform must be up (else: run `make up`).
2. A run directory .opslab/runs/<id>/ is created with the experiment.
3. Load starts (locust, the scenario's shape) and a sampler records SLIs and alerts.
4. Chaos Toolkit runs the experiment: steady-state hypothesis, then the method (inject, wait for
   the expected alert), then the rollbacks, which run even if the run is interrupted.
5. opslab waits for the SLIs to recover, deletes any Fault the run left and scales back any shop
   Deployment it resized, stops the load, and writes journal.json, timeline.csv, alerts.json,
   summary.json and report.html.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from opslab.primitives.errors import PlatformNotRunning
from opslab.primitives.files import new_run_dir
from opslab.runtime.endpoints import endpoint_environment
from opslab.scenarios import activities
from opslab.scenarios.load import LoadRun
from opslab.scenarios.model import Scenario
from opslab.scenarios.observe import Observation, Sampler
from opslab.scenarios.report import write_report
from opslab.settings import Settings

RECOVERY_ERROR_RATIO = 0.02
RECOVERY_SLOW_RATIO = 0.05
WARM_UP = 8.0


class RunObserver(Protocol):
    def phase(self, name: str, detail: str = "") -> None: ...


class _Quiet:
    def phase(self, name: str, detail: str = "") -> None:
        pass


@dataclass
class Summary:
    scenario: str
    run_id: str
    passed: bool
    verdict: str
    status: str
    injected: str
    expected_alert: str | None
    alert_seconds: float | None
    first_alert: str | None
    first_alert_seconds: float | None
    recovered: bool
    recovery_seconds: float | None
    peak_error_ratio: float
    peak_slow_ratio: float
    peak_availability_burn: float
    false_positives: list[str] = field(default_factory=list)
    leftovers_removed: list[str] = field(default_factory=list)
    report: str = ""

    @property
    def facts(self) -> list[tuple[str, str]]:
        def seconds(value: float | None) -> str:
            return "-" if value is None else f"{value:.0f} s"

        return [
            ("injected", self.injected),
            ("expected alert", self.expected_alert or "none (control)"),
            ("expected alert fired after", seconds(self.alert_seconds)),
            ("first alert", f"{self.first_alert or '-'} after {seconds(self.first_alert_seconds)}"),
            ("peak gateway error ratio", f"{self.peak_error_ratio:.1%}"),
            ("peak gateway slow ratio", f"{self.peak_slow_ratio:.1%}"),
            ("peak availability burn rate", f"{self.peak_availability_burn:.1f}x"),
            ("recovered after rollback", f"{'yes' if self.recovered else 'no'}, {seconds(self.recovery_seconds)}"),
            ("Chaos Toolkit status", self.status),
        ]


def _platform_env(settings: Settings, run_id: str) -> dict[str, str]:
    return {**endpoint_environment(settings), "OPSLAB_RUN_ID": run_id}


def ensure_platform(settings: Settings) -> None:
    """PlatformNotRunning unless the shop, Prometheus and Alertmanager answer."""
    p = settings.ports
    for what, url in (
        ("the shop", f"http://127.0.0.1:{p.shop}/healthz"),
        ("Prometheus", f"http://127.0.0.1:{p.prometheus}/-/ready"),
        ("Alertmanager", f"http://127.0.0.1:{p.alertmanager}/-/ready"),
    ):
        try:
            httpx.get(url, timeout=3).raise_for_status()
        except httpx.HTTPError:
            raise PlatformNotRunning(f"{what} does not answer at {url}: the platform is not running") from None


def run_chaos(scenario: Scenario, run_dir: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run the experiment with the Chaos Toolkit CLI (`chaos run`) and return its journal.

    Rollbacks run always, also on Ctrl-C (the child receives the same SIGINT and rolls back first).
    The hypothesis is checked before the method only: opslab checks recovery itself after the
    rollbacks, when checking it during the fault would only say what is already known.
    """
    (run_dir / "chaos-settings.yaml").write_text("{}\n")
    journal_path = run_dir / "journal.json"
    within = scenario.expectation.within if scenario.expectation else 120.0
    timeout = within + 300
    args = [
        str(Path(sys.executable).with_name("chaos")), "--no-version-check",
        "--log-file", str(run_dir / "chaostoolkit.log"), "--settings", str(run_dir / "chaos-settings.yaml"),
        "run", "--journal-path", str(journal_path), "--rollback-strategy", "always",
        "--hypothesis-strategy", "before-method-only", str(run_dir / "experiment.yaml"),
    ]  # fmt: skip
    with (run_dir / "chaostoolkit.out").open("wb") as out:
        proc = subprocess.Popen(args, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)  # let it roll back
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        except KeyboardInterrupt:
            proc.wait(90)  # the child got the SIGINT too and is rolling back
            raise
    if not journal_path.is_file():
        return {"status": "not run", "note": f"chaos exited {proc.returncode}; see chaostoolkit.out"}
    return dict(json.loads(journal_path.read_text()))


def _activity_output(journal: dict[str, Any], func: str) -> tuple[str, Any]:
    for run in journal.get("run", []):
        provider = run.get("activity", {}).get("provider", {})
        if provider.get("func") == func:
            return str(run.get("status")), run.get("output")
    return "not run", None


def _wait_recovered(scenario: Scenario, deadline: float) -> float | None:
    """Seconds until the gateway (and the faulted service) are back within the SLO thresholds."""
    began = time.monotonic()
    services = {"gateway"}
    if scenario.fault and scenario.fault.get("target") in {"catalog", "cart", "checkout", "payments"}:
        services.add(str(scenario.fault["target"]))
    while time.monotonic() < deadline:
        try:
            healthy = all(
                activities.error_ratio_below(s, RECOVERY_ERROR_RATIO)
                and activities.slow_ratio_below(s, RECOVERY_SLOW_RATIO)
                for s in services
            )
        except httpx.HTTPError:
            healthy = False
        if healthy:
            return time.monotonic() - began
        time.sleep(3)
    return None


def run_scenario(
    scenario: Scenario,
    settings: Settings,
    *,
    observer: RunObserver | None = None,
    runs_root: Path | None = None,
) -> Summary:
    observer = observer or _Quiet()
    ensure_platform(settings)
    run_dir = new_run_dir(runs_root or settings.paths.runs, scenario.name)
    run_id = run_dir.name
    shutil.copyfile(scenario.path, run_dir / "experiment.yaml")
    saved_env = {k: os.environ.get(k) for k in _platform_env(settings, run_id)}
    os.environ.update(_platform_env(settings, run_id))

    p = settings.ports
    sampler = Sampler(f"http://127.0.0.1:{p.prometheus}", f"http://127.0.0.1:{p.alertmanager}").start()
    load = LoadRun(
        settings.paths.root / "scenarios" / "load" / "locustfile.py",
        scenario.load,
        f"http://127.0.0.1:{p.shop}",
        run_dir,
    )
    replicas = activities.shop_replicas()
    journal: dict[str, Any] = {}
    window = [time.time(), time.time()]
    recovery: float | None = None
    leftovers: list[str] = []
    try:
        observer.phase("load", f"{scenario.load.shape} at {scenario.load.rps:g} req/s ({scenario.load.mix})")
        load.start()
        time.sleep(WARM_UP)
        observer.phase("experiment", "steady-state hypothesis, inject, wait for the alert, roll back")
        window[0] = time.time()
        journal = run_chaos(scenario, run_dir, _platform_env(settings, run_id))
        window[1] = time.time()
        observer.phase("recovery", f"waiting up to {scenario.recover_within:.0f} s for the SLIs to recover")
        recovery = _wait_recovered(scenario, time.monotonic() + scenario.recover_within)
    finally:
        window[1] = max(window[1], window[0])
        try:
            leftovers = activities.remove_run_faults(run_id)
            leftovers += activities.restore_replicas(replicas)
        except Exception as exc:  # report, but never leave the run without its files
            leftovers = [f"(could not check: {exc})"]
        load.stop()
        observation = sampler.stop()
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    summary = summarise(
        scenario,
        run_id=run_id,
        journal=journal,
        observation=observation,
        window=window,
        recovery=recovery,
        leftovers=leftovers,
    )
    observation.write(run_dir)
    (run_dir / "journal.json").write_text(json.dumps(journal, indent=1, default=str))
    summary.report = str(write_report(run_dir, scenario, observation, summary, (window[0], window[1])))
    (run_dir / "summary.json").write_text(json.dumps(summary.__dict__, indent=1, default=str))
    return summary


def summarise(
    scenario: Scenario,
    *,
    run_id: str,
    journal: dict[str, Any],
    observation: Observation,
    window: list[float],
    recovery: float | None,
    leftovers: list[str],
) -> Summary:
    status = str(journal.get("status", "not run"))
    injected = scenario.injects
    expected = scenario.expectation.alert if scenario.expectation else None
    wait_status, wait_output = _activity_output(journal, "wait_for_alert")
    alert_seconds = float(wait_output["seconds"]) if wait_status == "succeeded" and wait_output else None
    first = observation.first_alert_after(window[0])
    first_name, first_seconds = (first.alertname, max(first.first_seen - window[0], 0.0)) if first else (None, None)
    if alert_seconds is not None and (first_seconds is None or alert_seconds <= first_seconds):
        # The probe saw the expected alert in Prometheus before the sampler saw any alert in
        # Alertmanager (which holds alerts for its group_wait): it was the first.
        first_name, first_seconds = expected, alert_seconds
    # A false positive is an alert that started during the run; one still firing from an earlier
    # disruption (slow-burn windows are long) was already there at the first sample.
    false_positives = (
        sorted(
            {
                a.alertname
                for a in observation.alerts.values()
                if a.alertname != "Watchdog" and a.first_seen > observation.first_sample
            }
        )
        if scenario.control
        else []
    )
    hypothesis_ok = bool((journal.get("steady_states") or {}).get("before", {}).get("steady_state_met"))
    recovered = recovery is not None
    if not hypothesis_ok:
        passed, verdict = False, "the steady state did not hold before injection (see journal.json)"
    elif scenario.control:
        passed = not false_positives and recovered
        verdict = "no alert fired" if not false_positives else f"false positives: {', '.join(false_positives)}"
    else:
        passed = alert_seconds is not None and recovered
        verdict = (
            f"{expected} fired after {alert_seconds:.0f} s; "
            if alert_seconds is not None
            else f"{expected} did not fire in time; "
        ) + ("the SLIs recovered after the rollback" if recovered else "the SLIs did not recover in time")
    # The SLIs are rates over a window, so they lag the fault: the impact is read from the
    # injection until the end of the observation (after the recovery wait), not only the fault window.
    impact_end = math.inf
    return Summary(
        scenario=scenario.name,
        run_id=run_id,
        passed=passed,
        verdict=verdict,
        status=status,
        injected=injected,
        expected_alert=expected,
        alert_seconds=alert_seconds,
        first_alert=first_name,
        first_alert_seconds=first_seconds,
        recovered=recovered,
        recovery_seconds=recovery,
        peak_error_ratio=observation.peak("gateway", "error_ratio", window[0], impact_end),
        peak_slow_ratio=observation.peak("gateway", "slow_ratio", window[0], impact_end),
        peak_availability_burn=observation.peak("gateway", "availability_burn", window[0], impact_end),
        false_positives=false_positives,
        leftovers_removed=leftovers,
    )
