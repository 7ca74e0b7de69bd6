"""The test session's lab gradings are ordered by how long they took last time (tests/labs/support.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.labs.support import Concurrent


def pool(tmp_path: Path, history: Path) -> Concurrent:
    platform: Any = object()  # the history never touches the platform
    return Concurrent(platform, tmp_path, jobs=1, history=history)


def test_times_are_remembered_and_merged_with_older_ones(tmp_path: Path) -> None:
    history = tmp_path / "cache" / "test-grading-seconds.json"
    first = pool(tmp_path, history)
    first.seconds = {"5:slow-mutant": 157.5, "1:solution": 41.0}
    first.remember()
    second = pool(tmp_path, history)
    second.seconds = {"1:solution": 39.0}
    second.remember()
    assert second.expected("5:slow-mutant") == 157.5, "a grading this session did not run keeps its old time"
    assert second.expected("1:solution") == 39.0
    assert second.expected("2:never-graded") == 0.0
    assert not list(history.parent.glob("*.partial")), "the history is replaced whole, never left half-written"


def test_an_unreadable_history_orders_nothing(tmp_path: Path) -> None:
    history = tmp_path / "test-grading-seconds.json"
    history.write_text("{not json")
    assert pool(tmp_path, history).expected("1:solution") == 0.0
    history.write_text('["a list"]')
    assert pool(tmp_path, history).expected("1:solution") == 0.0
    assert pool(tmp_path, tmp_path / "absent.json").expected("1:solution") == 0.0
