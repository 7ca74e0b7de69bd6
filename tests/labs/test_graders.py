"""Every lab's grader can tell right from wrong, on every track (lab 2: kopf and Go):

- the reference solution scores full marks;
- the untouched starter earns nothing: every check fails, each with a reason and a hint;
- every broken variant of the solution (solutions/NN-topic/mutants.yaml) is caught by the check
  meant for it, failing on its own assertion (not in a fixture, not by never running).

The gradings run concurrently (see conftest.py); each test waits for its own, and only the
gradings of the selected tests run (`-k lab-4` grades lab 4 alone). The checks that own the shop
(lab 6's agent on held-out incidents) are graded in the incident world, one grading at a time, and
left out of the gradings on the session's platform.
"""

from __future__ import annotations

import pytest

from opslab.grading.runner import list_checks
from opslab.runtime.lifecycle import Platform
from tests.integration.incident_world import PER_GRADING, START_UP, World
from tests.labs.support import Concurrent, Mutant, Track, all_tracks, assert_caught, failed

pytestmark = [pytest.mark.platform, pytest.mark.slow]
TRACKS = all_tracks()
MUTANTS = [(track, mutant) for track in TRACKS for mutant in track.mutants if not track.in_world(mutant.name)]
IN_WORLD = [(track, what) for track in TRACKS for what in ("solution", "starter", *(m.name for m in track.mutants))
            if track.in_world(what)]  # fmt: skip


@pytest.mark.grading("solution")
@pytest.mark.parametrize("track", TRACKS, ids=lambda t: t.label)
def test_the_solution_scores_full_marks(track: Track, gradings: Concurrent) -> None:
    result = gradings.result(track.key("solution"))
    assert not result.problem, result.problem
    expected = {c.id for c in list_checks(track.lab, gradings.platform.settings)} - set(track.shop_checks)
    assert {c.id for c in result.checks} == expected
    assert result.earned == result.total, failed(result)
    assert result.passed


@pytest.mark.grading("starter")
@pytest.mark.parametrize("track", TRACKS, ids=lambda t: t.label)
def test_the_untouched_starter_earns_nothing(track: Track, gradings: Concurrent) -> None:
    result = gradings.result(track.key("starter"))
    assert not result.problem, result.problem
    earned = {c.id: c.points for c in result.checks if c.passed}
    assert not earned, f"the untouched starter earns points on {earned}"
    for item in result.checks:
        assert item.status in {"failed", "error"}, f"{item.id} is {item.status} on the starter"
        assert item.reason and item.hint, f"{item.id} fails without a reason or hint"
        assert "Traceback" not in item.reason and "\n" not in item.reason.strip(), item.reason


@pytest.mark.grading("mutant")
@pytest.mark.parametrize(("track", "mutant"), MUTANTS, ids=[f"{t.label}-{m.name}" for t, m in MUTANTS])
def test_each_broken_variant_is_caught(track: Track, mutant: Mutant, gradings: Concurrent) -> None:
    assert_caught(gradings.result(track.key(mutant.name)), mutant)


@pytest.mark.world_grading
@pytest.mark.timeout(START_UP + PER_GRADING + 60)
@pytest.mark.parametrize(("track", "what"), IN_WORLD, ids=[f"{t.label}-{w}" for t, w in IN_WORLD])
def test_the_shop_checks_grade_right(track: Track, what: str, incident_world: World, platform: Platform) -> None:
    """The checks that run incidents on the shop, graded in the incident world: the solution passes
    each, the starter fails each with a reason and a hint, a mutant meant for one is caught by it."""
    result = incident_world.grading(track.key(what))
    shop = {c.id for c in list_checks(track.lab, platform.settings) if c.owns_shop}
    assert set(track.shop_checks) == shop, "tests/labs/support.shop_checks disagrees with the grader's marks"
    if what == "solution":
        assert not result.problem, result.problem
        assert {c.id for c in result.checks} == shop
        assert result.earned == result.total, failed(result)
    elif what == "starter":
        assert {c.id for c in result.checks} == shop
        for item in result.checks:
            assert item.status in {"failed", "error"}, f"{item.id} is {item.status} on the starter"
            assert item.reason and item.hint, f"{item.id} fails without a reason or hint"
            assert "Traceback" not in item.reason and "\n" not in item.reason.strip(), item.reason
    else:
        assert_caught(result, track.mutant(what))
