"""The labs: labs/NN-topic/ with lab.toml, README.md, hints.md, starter/ and grader/."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from opslab.primitives.errors import ConfigError

_LAB_DIR = re.compile(r"^(\d{2})-[a-z0-9-]+$")


@dataclass(frozen=True)
class Lab:
    number: int
    slug: str
    title: str
    minutes: int
    pass_mark: float
    directory: Path
    time_limit: float
    """The overall limit of one grading run (seconds): at least the sum of the checks' own limits
    plus ``setup_limit``; a run cut by it never passes."""
    setup_limit: float = 0.0
    """Time the grader may spend before its first check (lab 2's Go build), within ``time_limit``."""
    preview_rules: tuple[str, ...] = ()
    """Rule files `opslab lab preview` loads into the platform's Prometheus (lab.toml [preview])."""
    preview_port: int = 0
    """The port of the learner's exporter that `opslab lab preview` adds as a target."""
    graders: Path | None = None
    """An instructor's directory of graders (laid out like labs/) used instead of this lab's own."""

    @property
    def name(self) -> str:
        return self.directory.name

    @property
    def starter(self) -> Path:
        return self.directory / "starter"

    @property
    def grader(self) -> Path:
        if self.graders is not None:
            return self.graders / self.name / "grader"
        return self.directory / "grader"

    @property
    def debrief(self) -> Path:
        return self.directory / "debrief.md"

    @property
    def readme(self) -> Path:
        return self.directory / "README.md"

    def hint_tracks(self) -> list[str]:
        """The tracks with hints of their own: "" (hints.md) and each NAME of a hints.NAME.md."""
        return ["", *sorted(p.name[len("hints.") : -len(".md")] for p in self.directory.glob("hints.*.md"))]

    def hints(self, track: str = "") -> list[str]:
        """The hints of ``track`` (hints.md, or hints.TRACK.md), in order (each starts with `## `)."""
        if track not in self.hint_tracks():
            tracks = ", ".join(t for t in self.hint_tracks() if t) or "none"
            raise ConfigError(f"lab {self.number} has no {track!r} track", fix=f"its tracks are: {tracks}")
        text = (self.directory / (f"hints.{track}.md" if track else "hints.md")).read_text()
        parts = re.split(r"^## ", text, flags=re.MULTILINE)[1:]
        return [("## " + part).strip() for part in parts]


def load_lab(directory: Path) -> Lab:
    match = _LAB_DIR.match(directory.name)
    if not match:
        raise ConfigError(f"{directory} is not a lab directory (NN-topic)")
    where = directory / "lab.toml"
    try:
        meta = tomllib.loads(where.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{where} cannot be read: {exc}") from None
    for key in ("title", "time_limit"):
        if key not in meta:
            raise ConfigError(f"{where} has no {key}", fix=f"add `{key} = ...` (see docs/instructor.md)")
    try:
        return Lab(
            number=int(match.group(1)),
            slug=directory.name[3:],
            title=str(meta["title"]),
            minutes=int(meta.get("minutes", 60)),
            pass_mark=float(meta.get("pass_mark", 0.8)),
            directory=directory,
            time_limit=float(meta["time_limit"]),
            setup_limit=float(meta.get("setup_limit", 0)),
            preview_rules=tuple(str(r) for r in meta.get("preview", {}).get("rules", ())),
            preview_port=int(meta.get("preview", {}).get("port", 0)),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where} has a value of the wrong type: {exc}") from None


def all_labs(root: Path) -> list[Lab]:
    return [load_lab(d) for d in sorted((root / "labs").iterdir()) if d.is_dir() and _LAB_DIR.match(d.name)]


def find_lab(root: Path, number: str | int) -> Lab:
    """The lab numbered ``number`` ("1", "01" or 1); a clear error names the labs that exist."""
    labs = all_labs(root)
    try:
        wanted = int(number)
    except (TypeError, ValueError):
        wanted = -1
    for lab in labs:
        if lab.number == wanted:
            return lab
    known = ", ".join(f"{lab.number} ({lab.title})" for lab in labs)
    raise ConfigError(f"there is no lab {number!r}", fix=f"choose one of: {known}")
