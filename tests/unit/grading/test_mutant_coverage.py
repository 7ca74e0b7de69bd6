"""Every check of every lab is proven by at least one mutant, and every mutant is well formed.

The platform tests in tests/labs/ grade each mutant and require the named check to fail on it;
this fast test makes sure no check is left without one and no mutant silently applies to nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from opslab import settings as settings_module
from opslab.grading.labs import Lab, all_labs
from opslab.grading.runner import list_checks
from tests.labs.support import Mutant, load_mutants, shop_checks

ROOT = Path(__file__).resolve().parents[3]


def tracks(lab: Lab) -> list[tuple[str, Path]]:
    """(name, solution directory) of each track with a mutants file: the lab's, and e.g. go/."""
    solution = ROOT / "solutions" / lab.name
    return [
        (path.parent.relative_to(solution).as_posix(), path.parent) for path in sorted(solution.rglob("mutants.yaml"))
    ]


CASES = [(lab, name, directory) for lab in all_labs(ROOT) for name, directory in tracks(lab)]


@pytest.mark.parametrize(("lab", "track", "directory"), CASES, ids=[f"{lab.name}:{track}" for lab, track, _ in CASES])
def test_every_check_has_a_mutant_and_every_mutant_applies_once(lab: Lab, track: str, directory: Path) -> None:
    listed = list_checks(lab, settings_module.load(root=ROOT, environ={}))
    checks = {c.id for c in listed}
    # The tests grade these apart, in the incident world: they must be the ones the grader marks.
    assert set(shop_checks(lab)) == {c.id for c in listed if c.owns_shop}, "shop_checks disagrees with the grader"
    found = load_mutants(directory / "mutants.yaml")
    unknown = sorted({m.caught_by for m in found} - checks)
    assert not unknown, f"{lab.name} ({track}): mutants name checks that do not exist: {unknown}"
    unproven = sorted(checks - {m.caught_by for m in found})
    assert not unproven, f"{lab.name} ({track}): no mutant proves these checks can fail: {unproven}"
    for mutant in found:
        text = (directory / mutant.file).read_text()
        for find, replace in mutant.edits:
            assert text.count(find) == 1, f"{mutant.name}: its find occurs {text.count(find)} times"
            assert replace != find, f"{mutant.name} changes nothing"


def test_every_lab_has_mutants() -> None:
    assert {lab.name for lab, _, _ in CASES} == {lab.name for lab in all_labs(ROOT)}


def test_a_mutant_may_edit_two_places(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = 1\ny = 2\n")
    Mutant("m", "a.py", "x = 1", "x = 3", "test_x", also=(("y = 2", "y = 4"),)).apply(tmp_path)
    assert (tmp_path / "a.py").read_text() == "x = 3\ny = 4\n"
    with pytest.raises(AssertionError, match="occurs 0 times"):
        Mutant("m", "a.py", "x = 3", "x = 5", "test_x", also=(("z = 1", "z = 2"),)).apply(tmp_path)


def test_a_mutant_that_matches_nothing_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = 1\n")
    with pytest.raises(AssertionError, match="occurs 0 times"):
        Mutant("m", "a.py", "y = 2", "y = 3", "test_x").apply(tmp_path)
