"""A stale sweep reads the live runs after it lists what runs left: a grading that starts while
another one sweeps (its namespace made between the two reads) must not lose what it just made."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from opslab.grading import isolation


def test_a_run_that_starts_during_a_sweep_is_not_swept(monkeypatch: pytest.MonkeyPatch) -> None:
    listed: list[str] = []

    class Core:
        def list_namespace(self, label_selector: str) -> Any:
            listed.append("namespaces")
            meta = SimpleNamespace(name="grade-gnew1234", labels={isolation.RUN_LABEL: "gnew1234"})
            return SimpleNamespace(items=[SimpleNamespace(metadata=meta)])

        def list_node(self, label_selector: str) -> Any:
            listed.append("nodes")
            return SimpleNamespace(items=[])

    def live_runs(_api: Any) -> set[str]:
        # The new run's namespace (with its live owner) exists only from the moment it was listed.
        return {"gnew1234"} if "namespaces" in listed else set()

    swept: list[set[str]] = []
    monkeypatch.setattr(isolation.client, "CoreV1Api", lambda _api: Core())
    monkeypatch.setattr(isolation, "live_runs", live_runs)
    monkeypatch.setattr(isolation, "sweep", lambda _api, runs, **_: swept.append(runs) or [])
    assert isolation.sweep_stale(object()) == []
    assert swept == [], "a run that started while the sweep listed namespaces was swept as stale"
