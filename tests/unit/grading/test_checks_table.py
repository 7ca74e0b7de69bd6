"""Each lab README's table of checks is the one its grader collects (generated, never hand-kept)."""

from __future__ import annotations

from pathlib import Path

import pytest

from opslab import settings as settings_module
from opslab.grading import checks_table
from opslab.grading.labs import Lab, all_labs
from opslab.grading.rubric import CheckResult
from opslab.grading.runner import list_checks
from opslab.primitives.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]
LABS = all_labs(ROOT)


@pytest.mark.parametrize("lab", LABS, ids=lambda lab: lab.name)
def test_the_readme_lists_the_graders_checks(lab: Lab) -> None:
    settings = settings_module.load(root=ROOT, environ={})
    table = checks_table.current(lab)
    assert table is not None, f"{lab.readme} has no checks table: add the markers, run `opslab lab checks N --write`"
    assert table == checks_table.render(list_checks(lab, settings)), (
        f"{lab.readme}'s checks table is stale: run `opslab lab checks {lab.number} --write`"
    )


def test_write_replaces_only_the_table(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text(f"# Lab\n\nbefore\n\n{checks_table.BEGIN}\nold\n{checks_table.END}\n\nafter\n")
    lab = Lab(number=9, slug="x", title="x", minutes=1, pass_mark=0.8, directory=tmp_path, time_limit=60)
    check = CheckResult(
        id="t", title="a | b", section="S", points=2, earned=0, status="not-run", reason="", hint="", seconds=0,
        timeout=30,
    )  # fmt: skip
    assert checks_table.write(lab, [check])
    text = (tmp_path / "README.md").read_text()
    assert text.startswith("# Lab\n\nbefore\n\n") and text.endswith("\n\nafter\n")
    assert "| S | a \\| b | 2 | 30 s |" in text and "**2**" in text and "old" not in text
    assert not checks_table.write(lab, [check]), "an unchanged table is not rewritten"
    (tmp_path / "README.md").write_text("# no markers\n")
    with pytest.raises(ConfigError, match="has no place for the checks table"):
        checks_table.write(lab, [check])


@pytest.mark.parametrize("lab", LABS, ids=lambda lab: lab.name)
def test_each_lab_has_everything_a_self_paced_learner_needs(lab: Lab) -> None:
    """The lab standard: README with its checks, hints per track, a debrief, a starter, a grader."""
    for name in ("README.md", "hints.md", "debrief.md", "lab.toml"):
        assert (lab.directory / name).is_file(), f"{lab.name} has no {name}"
    assert lab.starter.is_dir() and lab.grader.is_dir()
    for track in lab.hint_tracks():
        assert len(lab.hints(track)) >= 3, f"{lab.name} track {track or 'default'} has fewer than 3 hints"
    debrief = lab.debrief.read_text()
    assert "## Common mistakes" in debrief, f"{lab.name}'s debrief does not name the common mistakes"
    index = (ROOT / "docs" / "labs" / "index.md").read_text()
    assert f"lab-{lab.number:02d}.md" in index, f"docs/labs/index.md does not list lab {lab.number}"
