"""Proving a lab's grader: the solution scores full marks, the starter fails, each mutant is caught."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from opslab.grading.labs import Lab
from opslab.grading.rubric import Grade
from opslab.grading.runner import grade
from opslab.runtime.lifecycle import Platform

ROOT = Path(__file__).resolve().parents[2]


def mutants(lab: Lab) -> list[dict[str, Any]]:
    return list(yaml.safe_load((ROOT / "solutions" / lab.name / "mutants.yaml").read_text()))


def grade_copy(lab: Lab, platform: Platform, source: Path, work: Path, mutant: dict[str, Any] | None = None) -> Grade:
    """Grade a copy of ``source`` (with ``mutant`` applied) against the lab's grader.

    A mutant is graded with only the check meant to catch it (plus any it depends on through
    fixtures), which proves that check can fail without re-running the whole lab.
    """
    target = work / "submission"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("mutants.yaml", "__pycache__"))
    if mutant:
        path = target / mutant["file"]
        text = path.read_text()
        assert text.count(mutant["find"]) >= 1, (
            f"mutant {mutant['name']}: {mutant['find']!r} is not in {mutant['file']}"
        )
        path.write_text(text.replace(mutant["find"], mutant["replace"]))
    only = [mutant["caught_by"]] if mutant else None
    result, _ = grade(lab, platform.settings, path=target, runs_root=work / "runs", record=False, only=only)
    return result


def failed(result: Grade) -> dict[str, str]:
    return {c.id: c.reason for c in result.checks if not c.passed}
