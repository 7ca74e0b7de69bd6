"""`opslab lab list | check N | hint N | reset N` and `opslab grade --submissions DIR`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
from rich.table import Table

from opslab.cli.context import load_settings
from opslab.cli.output import console, fmt_seconds
from opslab.grading import hints as hints_module
from opslab.grading.gradebook import grade_submissions
from opslab.grading.labs import all_labs, find_lab
from opslab.grading.rubric import Grade
from opslab.grading.runner import grade, history
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


def print_grade(result: Grade, run_dir: Path) -> None:
    table = Table(header_style="bold", show_lines=False)
    for column in ("", "check", "points", "why it failed / hint"):
        table.add_column(column, overflow="fold")
    section = None
    for item in result.checks:
        if item.section != section:
            section = item.section
            table.add_row("", f"[bold]{section}[/]", "", "")
        mark = "[green]✓[/]" if item.passed else "[red]✗[/]"
        detail = "" if item.passed else f"{item.reason}\n[dim]hint: {item.hint}[/]"
        table.add_row(mark, item.title, f"{item.earned}/{item.points}", detail)
    console.print(table)
    if result.problem:
        console.print(f"[red]the grader could not run:[/] {result.problem}")
    verdict = "[bold green]PASSED[/]" if result.passed else "[bold red]NOT YET[/]"
    console.print(
        f"{verdict}  {result.earned}/{result.total} points ({result.score:.0%}); pass mark {result.pass_mark:.0%}; "
        f"graded in {fmt_seconds(result.seconds)}"
    )
    console.print(f"results: {run_dir / 'grade.json'}, {run_dir / 'junit.xml'}")


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
    print_grade(result, run_dir)
    sys.exit(0 if result.passed else 1)


@lab.command()
@click.argument("number")
@click.option("--all", "show_all", is_flag=True, help="Show every hint revealed so far.")
def hint(number: str, show_all: bool) -> None:
    """Reveal the next hint of a lab (one at a time)."""
    settings = load_settings()
    item = find_lab(settings.paths.root, number)
    shown, total = hints_module.reveal(settings.paths.state, item, show_all=show_all)
    for text in shown:
        console.print(text)
        console.print()
    console.print(f"[dim]{hints_module.revealed_count(settings.paths.state, item)} of {total} hints revealed[/]")


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
def grade_command(submissions: Path, labs: tuple[str, ...], out: Path | None) -> None:
    """Instructor mode: grade every learner checkout with the instructor's graders."""
    settings = load_settings()
    chosen = [find_lab(settings.paths.root, n) for n in labs] if labs else all_labs(settings.paths.root)
    book = grade_submissions(settings, submissions, chosen, out=out, progress=lambda text: console.print(f"  {text}"))
    console.print(f"gradebook: {book.csv} and {book.html}")
    for warning in book.tampered:
        console.print(f"[red]tampered:[/] {warning}")
