"""The incident catalog: every shipped incident loads, and bad files fail with a clear reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from opslab.incidents import vocabulary
from opslab.incidents.catalog import IncidentInvalid, NodeDown, Release, catalog, choose, load_incident

ROOT = Path(__file__).resolve().parents[2]


def test_every_shipped_incident_loads_and_uses_the_vocabulary() -> None:
    incidents = catalog(ROOT)
    assert len(incidents) >= 10
    types = {f.fault_type for i in incidents for f in i.answer}
    assert {
        "bad-rollout",
        "crash-loop",
        "capacity-loss",
        "latency",
        "cpu-throttling",
        "node-not-ready",
        "none",
    } <= types
    assert sum(i.quiet for i in incidents) >= 2, "no-op incidents measure false actions"
    assert any(len(i.answer) > 1 for i in incidents), "a combination of faults"
    assert any(isinstance(s, NodeDown) for i in incidents for s in i.injections)
    for incident in incidents:
        assert incident.name not in incident.title.lower()
        for finding in incident.answer:
            vocabulary.check(finding.service, finding.fault_type)
        # the neutral name gives nothing away
        assert not any(f.fault_type in incident.name or f.service in incident.name for f in incident.answer)


def test_the_same_seed_draws_the_same_incident() -> None:
    incidents = catalog(ROOT)
    assert choose(incidents, None, 7).name == choose(incidents, None, 7).name
    assert len({choose(incidents, None, seed).name for seed in range(40)}) > 3
    with pytest.raises(IncidentInvalid, match="no incident named"):
        choose(incidents, "inc-99", 1)


def test_a_held_out_folder_adds_incidents_and_replaces_a_shipped_one(tmp_path: Path) -> None:
    (tmp_path / "inc-01.yaml").write_text(
        "title: A secret one\ninject:\n- scale: {service: cart, replicas: 0}\n"
        "answer:\n- {service: cart, fault_type: capacity-loss}\ndebrief: held out\n"
    )
    (tmp_path / "hx-01.yaml").write_text((tmp_path / "inc-01.yaml").read_text())
    incidents = {i.name: i for i in catalog(ROOT, tmp_path)}
    assert incidents["inc-01"].held_out and incidents["inc-01"].title == "A secret one"
    assert incidents["hx-01"].held_out
    with pytest.raises(IncidentInvalid, match="does not exist"):
        catalog(ROOT, tmp_path / "missing")


def _file(inject: str, answer: str, title: str = "title: t\n") -> str:
    return f"{title}inject:\n{inject}answer:\n- {answer}\ndebrief: d\n"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_file("- scale: {service: shoes, replicas: 0}\n", "{service: cart, fault_type: capacity-loss}"),
         "not a shop service"),
        (_file("- release: {service: cart, tag: 1.0.1, fault: sneeze}\n", "{service: cart, fault_type: crash-loop}"),
         "fault 'sneeze'"),
        (_file("- release: {service: cart, tag: 1.0.1}\n", "{service: cart, fault_type: sneezing}"),
         "unknown fault type"),
        (_file("", "{service: cart, fault_type: crash-loop}"), "injects nothing"),
        (_file("- reboot: {}\n", "{service: node, fault_type: node-not-ready}"), "unknown injection"),
        (_file("- quota-drift: {service: shoes}\n", "{service: catalog, fault_type: quota-exhausted}"),
         "not a shop service"),
        (_file("- release: {service: cart, tag: 1.0.1, request_fault: {type: latency, latencyMs: -4}}\n",
               "{service: cart, fault_type: latency}"), "latencyMs"),
        (_file("", "{service: none, fault_type: none}", title=""), "title is missing"),
    ],
)  # fmt: skip
def test_a_bad_incident_file_names_what_is_wrong(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "inc-x1.yaml"
    path.write_text(body)
    with pytest.raises(IncidentInvalid, match=message):
        load_incident(path)


def test_a_release_keeps_its_parts() -> None:
    incident = load_incident(ROOT / "incidents" / "inc-06.yaml")
    (release,) = incident.injections
    assert isinstance(release, Release)
    assert release.request_fault == {"type": "latency", "latencyMs": 400}


def test_a_diagnosis_outside_the_vocabulary_is_refused() -> None:
    with pytest.raises(vocabulary.InvalidDiagnosis, match="unknown service"):
        vocabulary.check("shoes", "latency")
    with pytest.raises(vocabulary.InvalidDiagnosis, match="none"):
        vocabulary.check("cart", "none")


def test_the_docs_list_the_whole_vocabulary() -> None:
    text = (ROOT / "docs" / "incidents.md").read_text()
    for fault_type, description in vocabulary.FAULT_TYPES.items():
        assert f"| `{fault_type}` | {description} |" in text, f"docs/incidents.md lacks {fault_type}"
    for service in vocabulary.services():
        assert f"`{service}`" in text
