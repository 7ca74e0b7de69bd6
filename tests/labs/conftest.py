"""All the gradings the lab tests look at, started at once and run concurrently on one platform.

Grading runs are isolated (their own namespaces, nodes, topics, Prometheus and ports), so the
solution, the starter and every mutant of every lab are graded ``OPSLAB_TEST_GRADING_JOBS`` at a
time (default 2) while the tests wait on their own result.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from opslab.runtime.lifecycle import Platform
from tests.labs.support import Concurrent, Track, all_tracks


@pytest.fixture(scope="session")
def gradings(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Concurrent]:
    pool = Concurrent(
        platform, tmp_path_factory.mktemp("gradings"), jobs=int(os.environ.get("OPSLAB_TEST_GRADING_JOBS", "2"))
    )
    tracks: list[Track] = all_tracks()
    # Whole-lab gradings first (they take longest), then the single-check mutant runs.
    for track in tracks:
        pool.submit(track.key("solution"), track.lab, track.solution)
        pool.submit(track.key("starter"), track.lab, track.starter)
    for track in tracks:
        for mutant in track.mutants:
            pool.submit(track.key(mutant.name), track.lab, track.solution, mutant)
    yield pool
    pool.close()
