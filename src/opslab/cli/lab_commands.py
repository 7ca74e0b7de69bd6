"""`opslab lab list | check N | hint N | debrief N | checks N | reset N` and `opslab grade --submissions DIR`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
from rich.markdown import Markdown
from rich.markup import escape
from rich.table import Table

from opslab.cli.context import load_settings, toolchain_for
from opslab.cli.output import console, fmt_seconds
from opslab.grading import checks_table
from opslab.grading import hints as hints_module
from opslab.grading import preview as preview_module
from opslab.grading.gradebook import grade_submissions, use_graders
from opslab.grading.labs import Lab, all_labs, find_lab
from opslab.grading.rubric import Grade
from opslab.grading.runner import grade, history, list_checks, resolve_path
from opslab.grading.sandbox import SANDBOX_NOTE
from opslab.primitives.errors import ConfigError


@click.group()
def lab() -> None:
    """Graded labs: check your work, get hints, start over."""


def lab_status(grades: list[Grade]) -> tuple[str, str]:
    if not grades:
        return "not started", "-"
    best = max(grades, key=lambda g: g.score)
    state = "passed" if any(g.passed for g in grades) else "in progress"
    return state, f"{best.earned}/{best.total} ({best.score:.0%})"


@lab.command("list")
def list_() -> None:
    """Every lab with your status and best score."""
    settings = load_settings()
    table = Table(header_style="bold")
    for column in ("lab", "title", "time", "status", "best score"):
        table.add_column(column)
    for item in all_labs(settings.paths.root):
        state, best = lab_status(history(settings, item))
        colour = {"passed": "green", "in progress": "yellow"}.get(state, "white")
        table.add_row(str(item.number), item.title, f"{item.minutes} min", f"[{colour}]{state}[/]", best)
    console.print(table)
    console.print("Check a lab with `make lab-N` (or `opslab lab check N`); read labs/NN-topic/README.md first.")


def print_grade(item: Lab, result: Grade, run_dir: Path) -> None:
    table = Table(header_style="bold", show_lines=False)
    for column in ("", "check", "points", "why it failed / hint"):
        table.add_column(column, overflow="fold")
    section = None
    for entry in result.checks:
        if entry.section != section:
            section = entry.section
            table.add_row("", f"[bold]{escape(section)}[/]", "", "")
        mark = "[green]✓[/]" if entry.passed else "[red]✗[/]"
        # Reasons and hints quote code (`module.tenant[each.key]`, `x[0]`): shown as written, never as markup.
        detail = "" if entry.passed else f"{escape(entry.reason)}\n[dim]hint: {escape(entry.hint)}[/]"
        table.add_row(mark, escape(entry.title), f"{entry.earned}/{entry.points}", detail)
    console.print(table)
    if result.problem:
        console.print(f"[red]the grader could not run:[/] {escape(result.problem)}")
    verdict = "[bold green]PASSED[/]" if result.passed else "[bold red]NOT YET[/]"
    console.print(
        f"{verdict}  {result.earned}/{result.total} points ({result.score:.0%}); pass mark {result.pass_mark:.0%}; "
        f"graded in {fmt_seconds(result.seconds)}"
    )
    console.print(f"results: {run_dir / 'grade.json'}, {run_dir / 'junit.xml'}")
    note = run_dir / SANDBOX_NOTE
    if note.is_file() and "without" in note.read_text():
        console.print(f"[yellow]note:[/] {note.read_text().strip()}")
    if result.passed:
        console.print(
            f"Read the debrief: `opslab lab debrief {item.number}` (the reference solution, common mistakes)."
        )


@lab.command("check")
@click.argument("number")
@click.option(
    "--path", type=click.Path(path_type=Path), default=None, help="Grade this directory instead of the starter."
)
def check(number: str, path: Path | None) -> None:
    """Grade a lab (default: your work in labs/NN-topic/starter/)."""
    settings = load_settings()
    item = find_lab(settings.paths.root, number)
    console.print(f"lab {item.number}: {item.title}  (grading {path or item.starter})")
    result, run_dir = grade(item, settings, path=path)
    print_grade(item, result, run_dir)
    sys.exit(0 if result.passed else 1)


@lab.command()
@click.argument("number")
@click.option("--all", "show_all", is_flag=True, help="Show every hint revealed so far.")
@click.option("--track", default="", help="The hints of a track of the lab (lab 2: go).")
def hint(number: str, show_all: bool, track: str) -> None:
    """Reveal the next hint of a lab (one at a time)."""
    settings = load_settings()
    item = find_lab(settings.paths.root, number)
    shown, total = hints_module.reveal(settings.paths.state, item, track=track, show_all=show_all)
    for text in shown:
        console.print(Markdown(text))
        console.print()
    count = hints_module.revealed_count(settings.paths.state, item, track)
    console.print(f"[dim]{count} of {total} {track + ' ' if track else ''}hints revealed[/]")
    others = [t for t in item.hint_tracks() if t != track]
    if others and not show_all:
        names = ", ".join(f"`opslab lab hint {item.number}" + (f" --track {t}`" if t else "`") for t in others)
        console.print(f"[dim]other tracks of this lab have hints of their own: {names}[/]")


@lab.command()
@click.argument("number")
@click.option("--yes", is_flag=True, help="Show it even though the lab has not passed yet.")
def debrief(number: str, yes: bool) -> None:
    """The lab's debrief: what the reference solution does and why, and the common mistakes."""
    settings = load_settings()
    item = find_lab(settings.paths.root, number)
    if not item.debrief.is_file():
        raise ConfigError(f"lab {item.number} has no debrief ({item.debrief})", fix="is this checkout complete?")
    passed = any(g.passed for g in history(settings, item))
    if not passed and not yes:
        console.print(
            f"The debrief explains the reference solution of lab {item.number}, which you have not passed yet."
        )
        if not click.confirm("Show it anyway?", default=False):
            console.print(f"Later: `opslab lab debrief {item.number}` (it shows at once when the lab has passed).")
            return
    console.print(Markdown(item.debrief.read_text()))


@lab.command()
@click.argument("number")
@click.option("--path", type=click.Path(path_type=Path), default=None, help="Your work (default: the lab's starter/).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Your exporter's port (default: the lab's).")
@click.option("--stop", "stop_preview", is_flag=True, help="Remove your rules and target from Prometheus.")
def preview(number: str, path: Path | None, port: int | None, stop_preview: bool) -> None:
    """Load your rules and your exporter into the running Prometheus, to look at before grading."""
    settings = load_settings()
    item = find_lab(settings.paths.root, number)
    if stop_preview:
        removed = preview_module.stop(item, settings)
        console.print(f"removed {len(removed)} preview file(s) of lab {item.number}" if removed else "nothing to stop")
        return
    promtool = toolchain_for(settings).require("promtool")
    shown = preview_module.start(item, settings, promtool, path=resolve_path(item, path), port=port)
    scraping = f"; scraping your exporter at {shown.target}" if shown.target else ""
    console.print(f"loaded {', '.join(p.name for p in shown.rules)}{scraping}")
    console.print(f"  rules and alerts:  {shown.prometheus}/rules  and  {shown.prometheus}/alerts")
    if shown.target:
        console.print(f"  your exporter:     {shown.prometheus}/targets?search={shown.target}")
    console.print(f"  stop with:         opslab lab preview {item.number} --stop")


@lab.command()
@click.argument("number")
@click.option("--write", is_flag=True, help="Regenerate the table in the lab's README.")
def checks(number: str, write: bool) -> None:
    """The lab's checks, points and time limits, as the grader collects them."""
    settings = load_settings()
    item = find_lab(settings.paths.root, number)
    found = list_checks(item, settings)
    if write:
        changed = checks_table.write(item, found)
        console.print(f"{item.readme}: {'table updated' if changed else 'table already current'}")
        return
    table = Table(header_style="bold")
    for column in ("section", "check", "points", "limit"):
        table.add_column(column, overflow="fold")
    for entry in found:
        table.add_row(entry.section, entry.title, str(entry.points), f"{entry.timeout:.0f} s")
    console.print(table)
    console.print(f"{len(found)} checks, {sum(c.points for c in found)} points; overall limit {item.time_limit:.0f} s")


@lab.command()
@click.argument("number")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def reset(number: str, yes: bool) -> None:
    """Restore a lab's starter/ to its original content (your changes are lost)."""
    settings = load_settings()
    item = find_lab(settings.paths.root, number)
    relative = item.starter.relative_to(settings.paths.root)
    if not yes and not click.confirm(f"Discard your changes in {relative}?", default=False):
        console.print("nothing changed")
        return
    root = str(settings.paths.root)
    restore = subprocess.run(
        ["git", "-C", root, "checkout", "HEAD", "--", str(relative)], capture_output=True, text=True, check=False
    )
    if restore.returncode != 0:
        raise ConfigError(
            f"cannot restore {relative} from git: {restore.stderr.strip()}", fix="is this a git clone of opslab?"
        )
    subprocess.run(["git", "-C", root, "clean", "-fdq", "--", str(relative)], capture_output=True, check=False)
    console.print(f"{relative} restored")


@click.command("grade")
@click.option("--submissions", type=click.Path(path_type=Path, exists=True, file_okay=False), required=True,
              help="A directory with one learner checkout per subdirectory.")  # fmt: skip
@click.option("--lab", "labs", multiple=True, help="Only these lab numbers (repeatable; default all).")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Where to write the gradebook.")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Grading runs at a time (each is isolated; 2 suit a 2-core machine).")  # fmt: skip
@click.option("--graders", type=click.Path(path_type=Path), default=None,
              help="A directory laid out like labs/ whose NN-topic/grader/ replace the labs' own "
              "(for held-out cases learners' copies lack).")  # fmt: skip
def grade_command(submissions: Path, labs: tuple[str, ...], out: Path | None, jobs: int, graders: Path | None) -> None:
    """Instructor mode: grade every learner checkout with the instructor's graders."""
    settings = load_settings()
    chosen = [find_lab(settings.paths.root, n) for n in labs] if labs else all_labs(settings.paths.root)
    chosen = use_graders(chosen, graders)
    book = grade_submissions(
        settings, submissions, chosen, out=out, jobs=jobs, progress=lambda text: console.print(f"  {text}")
    )
    console.print(f"gradebook: {book.csv} and {book.html}")
    for warning in book.tampered:
        console.print(f"[red]tampered:[/] {warning}")
