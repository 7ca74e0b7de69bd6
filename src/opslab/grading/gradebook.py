"""Instructor mode: grade many learner checkouts with the instructor's graders, into a gradebook.

The graders always come from the instructor's copy; a submission whose grader files differ from
the instructor's (by sha256) is reported as tampered, and graded anyway with the real grader.
"""

from __future__ import annotations

import csv
import hashlib
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from jinja2 import Environment, select_autoescape

from opslab.grading.labs import Lab
from opslab.grading.rubric import Grade
from opslab.grading.runner import grade
from opslab.primitives.errors import ConfigError
from opslab.settings import Settings

TEMPLATE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>opslab gradebook</title>
<style>body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.3em .6em}.pass{background:#e6f4e6}.fail{background:#fbe9e9}</style></head><body>
<h1>Gradebook</h1><p>Graded {{ when }} with the instructor's graders.</p>
{% if tampered %}<h2>Tampered grader files</h2><ul>{% for t in tampered %}<li>{{ t }}</li>{% endfor %}</ul>{% endif %}
<table><tr><th>submission</th>{% for lab in labs %}<th>{{ lab.name }}</th>{% endfor %}</tr>
{% for name, row in rows %}<tr><td>{{ name }}</td>{% for lab in labs %}{% set g = row.get(lab.name) %}
<td class="{{ 'pass' if g and g.passed else 'fail' }}">{% if g %}{{ g.earned }}/{{ g.total }}{% if g.problem %} ({{ g.problem }}){% endif %}{% else %}-{% endif %}</td>
{% endfor %}</tr>{% endfor %}</table>
<h2>Per check</h2>
{% for name, row in rows %}{% for lab in labs %}{% set g = row.get(lab.name) %}{% if g %}
<h3>{{ name }}: {{ lab.name }}</h3><table><tr><th>check</th><th>points</th><th>reason</th></tr>
{% for c in g.checks %}<tr class="{{ 'pass' if c.passed else 'fail' }}"><td>{{ c.title }}</td><td>{{ c.earned }}/{{ c.points }}</td><td>{{ c.reason }}</td></tr>{% endfor %}
</table>{% endif %}{% endfor %}{% endfor %}</body></html>"""


@dataclass
class Gradebook:
    csv: Path
    html: Path
    grades: dict[str, dict[str, Grade]] = field(default_factory=dict)
    tampered: list[str] = field(default_factory=list)


def digests(directory: Path) -> dict[str, str]:
    """sha256 of every file under ``directory`` (caches excluded), by relative path."""
    if not directory.is_dir():
        return {}
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def tampering(submission: Path, lab: Lab) -> str | None:
    """A warning if the submission's copy of the lab's grader differs from the repository's.

    Compared with the lab's own grader, not an instructor's --graders copy: held-out cases that
    learners never had are not tampering."""
    theirs = digests(submission / "labs" / lab.name / "grader")
    ours = digests(lab.directory / "grader")
    if not theirs:
        return None
    changed = sorted(name for name in set(ours) | set(theirs) if ours.get(name) != theirs.get(name))
    if changed:
        return f"{submission.name}: {lab.name}/grader differs from the instructor's copy ({', '.join(changed)})"
    return None


def worked_tracks(submission: Path, lab: Lab) -> list[Path]:
    """The directories of ``lab`` to grade in ``submission``: its starter, or the tracks worked on.

    A lab may offer tracks as subdirectories of its starter (lab 2's Go track is starter/go). A
    track whose files differ from the instructor's starter is one the learner worked on; the
    starter's own files count as the default track. With no change anywhere, the default track is
    graded (and fails as the untouched starter does).
    """
    work = submission / "labs" / lab.name / "starter"
    tracks = sorted(p.name for p in lab.starter.iterdir() if p.is_dir()) if lab.starter.is_dir() else []

    def own_files(directory: Path) -> dict[str, str]:
        return {k: v for k, v in digests(directory).items() if k.split("/")[0] not in tracks}

    worked = [work / t for t in tracks if (work / t).is_dir() and digests(work / t) != digests(lab.starter / t)]
    if own_files(work) != own_files(lab.starter) or not worked:
        worked.insert(0, work)
    return worked


def use_graders(labs: list[Lab], graders: Path | None) -> list[Lab]:
    """``labs`` graded with an instructor's directory of graders (laid out like labs/), if given."""
    if graders is None:
        return labs
    root = graders.expanduser().resolve()
    if not root.is_dir():
        raise ConfigError(f"--graders {graders} is not a directory", fix="give a directory laid out like labs/")
    missing = [lab.name for lab in labs if not (root / lab.name / "grader").is_dir()]
    if missing:
        raise ConfigError(
            f"--graders {graders} has no grader for {', '.join(missing)}",
            fix=f"copy labs/{missing[0]}/grader to {root / missing[0] / 'grader'} (and add your held-out cases)",
        )
    return [replace(lab, graders=root) for lab in labs]


def grade_submissions(
    settings: Settings,
    submissions: Path,
    labs: list[Lab],
    *,
    out: Path | None = None,
    jobs: int = 1,
    progress: Callable[[str], None] = lambda _: None,
) -> Gradebook:
    """Grade every learner directory in ``submissions`` for each of ``labs``, ``jobs`` runs at a time.

    Each grading run is isolated (its own namespaces, ServiceAccount, topics and Prometheus), so
    concurrent runs score what sequential ones do; the gradebook is the same whatever ``jobs`` is.
    """
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs} is not a number of parallel gradings", fix="give 1 or more")
    out = out or settings.paths.runs / f"{time.strftime('%Y%m%d-%H%M%S')}-gradebook"
    out.mkdir(parents=True, exist_ok=True)
    book = Gradebook(csv=out / "gradebook.csv", html=out / "gradebook.html")
    learners = sorted(p for p in submissions.iterdir() if p.is_dir())
    runs: dict[tuple[str, str], list[Future[Grade]]] = {}
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="grade") as pool:

        def run(submission: Path, lab: Lab, track: Path) -> Grade:
            progress(f"{submission.name}: {lab.name} ({track.relative_to(submission / 'labs' / lab.name)})")
            result, _ = grade(lab, settings, path=track, runs_root=out / "runs" / submission.name, record=False)
            return result

        try:
            for submission in learners:
                for lab in labs:
                    warning = tampering(submission, lab)
                    if warning:
                        book.tampered.append(warning)
                    if (submission / "labs" / lab.name / "starter").is_dir():
                        tracks = worked_tracks(submission, lab)
                        runs[submission.name, lab.name] = [pool.submit(run, submission, lab, t) for t in tracks]
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    for submission in learners:
        row: dict[str, Grade] = {}
        for lab in labs:
            futures = runs.get((submission.name, lab.name))
            if futures is None:
                work = submission / "labs" / lab.name / "starter"
                row[lab.name] = Grade(
                    lab=lab.name, path=str(work), pass_mark=lab.pass_mark, problem="no work submitted"
                )
                continue
            # The learner's best track counts.
            row[lab.name] = max((f.result() for f in futures), key=lambda r: r.earned)
        book.grades[submission.name] = row
    with book.csv.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["submission", "lab", "check", "section", "points", "earned", "status", "reason"])
        for name, row in book.grades.items():
            for lab_name, result in row.items():
                writer.writerow(
                    [
                        name,
                        lab_name,
                        "TOTAL",
                        "",
                        result.total,
                        result.earned,
                        "passed" if result.passed else "failed",
                        result.problem,
                    ]
                )
                for c in result.checks:
                    writer.writerow([name, lab_name, c.id, c.section, c.points, c.earned, c.status, c.reason])
    environment = Environment(autoescape=select_autoescape(default=True))
    book.html.write_text(
        environment.from_string(TEMPLATE).render(
            when=time.strftime("%Y-%m-%d %H:%M"), labs=labs, rows=list(book.grades.items()), tampered=book.tampered
        )
    )
    return book
