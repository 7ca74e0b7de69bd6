"""Fault carriers are opaque: every fault the simulated kubelet acts out has a build id, the KWOK
stages switch on exactly those ids, and no stage or carrier names a fault in a label value."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from opslab.shop.controller import POD_TEMPLATE
from opslab.shop.faults import CARRIER_CODES, FAULT_LABEL, FaultType, carried, carrier

STAGES = Path(__file__).resolve().parents[2] / "platform" / "kwok" / "stages"


def test_every_kubelet_fault_has_an_opaque_build_id() -> None:
    for fault in [*(f.value for f in POD_TEMPLATE), FaultType.NODE_NOT_READY.value]:
        code = carrier(fault)
        assert carried(code) == fault
        assert fault not in code and re.fullmatch(r"b[0-9a-f]{4}", code)
    assert len(set(CARRIER_CODES.values())) == len(CARRIER_CODES)
    assert carried("") == "" and carried("crash-loop") == ""


def test_the_kwok_stages_switch_on_the_build_ids_only() -> None:
    text = "\n".join(p.read_text() for p in sorted(STAGES.glob("*.yaml")))
    for code in CARRIER_CODES.values():
        assert code in text, f"no stage switches on {code}"
    values = re.findall(r"values: \[([^\]]*)\]", text)
    named = [v for v in values if any(f"'{fault}'" in v or f'"{fault}"' in v for fault in CARRIER_CODES)]
    assert named == [], f"a stage still matches a fault by name: {named}"


SHOP = Path(__file__).resolve().parents[2] / "platform" / "k8s" / "shop"


def test_every_shop_pod_runs_a_healthy_build() -> None:
    """A faulty build is one build id among others: every shop Deployment's pods carry one, each its
    own, and none of them switches a fault on (so only the value, not the label, differs)."""
    builds = {}
    for path in sorted(SHOP.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Deployment":
                labels = doc["spec"]["template"]["metadata"]["labels"]
                builds[doc["metadata"]["name"]] = str(labels.get(FAULT_LABEL, ""))
    assert len(builds) == 7
    for name, build in builds.items():
        assert re.fullmatch(r"b[0-9a-f]{4}", build), f"{name}'s pods carry no build id"
        assert carried(build) == "", f"{name}'s healthy build {build} switches a fault on"
    assert len(set(builds.values())) == len(builds)
