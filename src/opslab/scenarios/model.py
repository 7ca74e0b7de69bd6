"""Scenario files: Chaos Toolkit experiments with an `opslab` extension, validated before a run.

A scenario is scenarios/<name>.yaml. Its steady-state hypothesis, method and rollbacks are plain
Chaos Toolkit; the `opslab` extension adds what Chaos Toolkit has no place for: the load to run
during the experiment, how soon the shop must recover after the rollback, and the answer shown to
the learner afterwards. The injected fault and the expected alert are read from the method itself
(the inject_fault / scale_deployment action and the wait_for_alert probe), so nothing is written twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from chaoslib.exceptions import ChaosException
from chaoslib.experiment import ensure_experiment_is_valid

from opslab.shop import faults as faults_module

SHAPES = ("steady", "spike", "ramp", "soak")
MIXES = ("browse", "checkout")
ACTIVITIES = "opslab.scenarios.activities"
EXTENSION_KEYS = {"name", "load", "recover_within", "answer", "control"}
LOAD_KEYS = {"shape", "rps", "duration", "mix"}


class ScenarioInvalid(Exception):
    """A scenario file that cannot run; the message names the file and the field."""


@dataclass(frozen=True)
class Load:
    shape: str
    rps: float
    duration: float
    mix: str = "browse"


@dataclass(frozen=True)
class Expectation:
    alert: str
    within: float
    labels: dict[str, str]


@dataclass(frozen=True)
class Scenario:
    name: str
    path: Path
    experiment: dict[str, Any]
    title: str
    description: str
    load: Load
    recover_within: float
    answer: str
    control: bool
    fault: dict[str, Any] | None
    """The inject_fault arguments, or a description of another injecting action."""
    expectation: Expectation | None

    @property
    def injects(self) -> str:
        """What the scenario breaks, in a few words ("latency on payments (latencyMs=400)")."""
        if self.fault is None:
            return "nothing (control)"
        where = self.fault.get("target") or self.fault.get("node") or "the platform"
        details = {k: v for k, v in self.fault.items() if k not in ("name", "type", "target", "node")}
        extra = " (" + ", ".join(f"{k}={v}" for k, v in details.items()) + ")" if details else ""
        return f"{self.fault['type']} on {where}{extra}"


def _activities(experiment: dict[str, Any], section: str) -> list[dict[str, Any]]:
    return [a for a in experiment.get(section) or [] if isinstance(a, dict)]


def _calls(activities: list[dict[str, Any]], func: str, module: str = ACTIVITIES) -> list[dict[str, Any]]:
    return [
        a
        for a in activities
        if (a.get("provider") or {}).get("module") == module and (a.get("provider") or {}).get("func") == func
    ]


def load_scenario(path: Path) -> Scenario:
    """Read and validate one scenario file."""
    where = str(path)
    try:
        experiment = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ScenarioInvalid(f"{where}: cannot be read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ScenarioInvalid(f"{where}: is not valid YAML ({exc})") from None
    if not isinstance(experiment, dict):
        raise ScenarioInvalid(f"{where}: is not a Chaos Toolkit experiment (a mapping)")
    chaos_logger = logging.getLogger("chaostoolkit")
    level = chaos_logger.level
    chaos_logger.setLevel(logging.CRITICAL)
    try:
        ensure_experiment_is_valid(experiment)
    except ChaosException as exc:
        raise ScenarioInvalid(f"{where}: {exc}") from None
    finally:
        chaos_logger.setLevel(level)

    extension = next((e for e in experiment.get("extensions") or [] if e.get("name") == "opslab"), None)
    if extension is None:
        raise ScenarioInvalid(f"{where}: no `opslab` entry in extensions (load, recover_within, answer)")
    unknown = set(extension) - EXTENSION_KEYS
    if unknown:
        raise ScenarioInvalid(
            f"{where}: extensions[opslab] has unknown field {sorted(unknown)[0]!r}; "
            f"allowed: {', '.join(sorted(EXTENSION_KEYS - {'name'}))}"
        )
    raw_load = extension.get("load") or {}
    if not isinstance(raw_load, dict) or set(raw_load) - LOAD_KEYS:
        bad = sorted(set(raw_load) - LOAD_KEYS) if isinstance(raw_load, dict) else ["load"]
        raise ScenarioInvalid(
            f"{where}: extensions[opslab].load has unknown field {bad[0]!r}; allowed: {sorted(LOAD_KEYS)}"
        )
    shape = raw_load.get("shape", "steady")
    if shape not in SHAPES:
        raise ScenarioInvalid(f"{where}: extensions[opslab].load.shape {shape!r} is not one of {', '.join(SHAPES)}")
    mix = raw_load.get("mix", "browse")
    if mix not in MIXES:
        raise ScenarioInvalid(f"{where}: extensions[opslab].load.mix {mix!r} is not one of {', '.join(MIXES)}")
    try:
        load = Load(shape, float(raw_load.get("rps", 20)), float(raw_load.get("duration", 240)), mix)
        recover_within = float(extension.get("recover_within", 120))
    except (TypeError, ValueError):
        raise ScenarioInvalid(
            f"{where}: extensions[opslab] load.rps, load.duration and recover_within are numbers"
        ) from None
    if not (0 < load.rps <= 500 and 10 <= load.duration <= 3600):
        raise ScenarioInvalid(f"{where}: extensions[opslab].load needs 0 < rps <= 500 and 10 <= duration <= 3600")
    answer = extension.get("answer")
    if not isinstance(answer, str) or not answer.strip():
        raise ScenarioInvalid(
            f"{where}: extensions[opslab].answer (what was injected, and what should catch it) is missing"
        )

    method = _activities(experiment, "method")
    control = bool(extension.get("control", False))
    injections = _calls(method, "inject_fault")
    scale_downs = _calls(method, "scale_deployment", module="chaosk8s.deployment.actions")
    fault: dict[str, Any] | None = None
    if injections:
        arguments = dict(injections[0]["provider"].get("arguments") or {})
        name = str(arguments.pop("name", ""))
        try:
            faults_module.parse(name or "?", arguments)
        except faults_module.InvalidFault as exc:
            raise ScenarioInvalid(f"{where}: method inject_fault: {exc}") from None
        fault = {"name": name, **arguments}
    elif scale_downs:
        arguments = scale_downs[0]["provider"].get("arguments") or {}
        fault = {"type": "scale-deployment", "target": arguments.get("name"), "replicas": arguments.get("replicas")}
    if control and (fault or injections):
        raise ScenarioInvalid(f"{where}: a control scenario (extensions[opslab].control) must inject nothing")
    if not control and fault is None:
        raise ScenarioInvalid(f"{where}: the method injects nothing (no inject_fault or scale_deployment action)")
    if not control and not _activities(experiment, "rollbacks"):
        raise ScenarioInvalid(f"{where}: rollbacks are missing: every injection must be undone")

    expectation = None
    waits = _calls(method, "wait_for_alert")
    if waits:
        arguments = waits[0]["provider"].get("arguments") or {}
        expectation = Expectation(
            alert=str(arguments.get("alert", "")),
            within=float(arguments.get("within", 120)),
            labels=dict(arguments.get("labels") or {}),
        )
    elif not control:
        raise ScenarioInvalid(f"{where}: the method has no wait_for_alert probe: which alert should catch this?")

    return Scenario(
        name=path.stem,
        path=path,
        experiment=experiment,
        title=str(experiment.get("title", path.stem)),
        description=str(experiment.get("description", "")),
        load=load,
        recover_within=recover_within,
        answer=answer.strip(),
        control=control,
        fault=fault,
        expectation=expectation,
    )


def catalog(directory: Path) -> list[Scenario]:
    """Every scenario under ``directory`` (scenarios/*.yaml), validated."""
    return [load_scenario(path) for path in sorted(directory.glob("*.yaml"))]


def find(directory: Path, name: str) -> Scenario:
    path = directory / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(p.stem for p in sorted(directory.glob("*.yaml")))
        raise ScenarioInvalid(f"unknown scenario {name!r}; known scenarios: {known}")
    return load_scenario(path)
