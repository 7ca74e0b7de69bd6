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

    @property
    def name(self) -> str:
        return self.directory.name

    @property
    def starter(self) -> Path:
        return self.directory / "starter"

    @property
    def grader(self) -> Path:
        return self.directory / "grader"

    @property
    def readme(self) -> Path:
        return self.directory / "README.md"

    def hints(self) -> list[str]:
        """The hints in hints.md, in order (each starts with a `## ` heading)."""
        text = (self.directory / "hints.md").read_text()
        parts = re.split(r"^## ", text, flags=re.MULTILINE)[1:]
        return [("## " + part).strip() for part in parts]


def load_lab(directory: Path) -> Lab:
    match = _LAB_DIR.match(directory.name)
    if not match:
        raise ConfigError(f"{directory} is not a lab directory (NN-topic)")
    try:
        meta = tomllib.loads((directory / "lab.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{directory / 'lab.toml'} cannot be read: {exc}") from None
    return Lab(
        number=int(match.group(1)),
        slug=directory.name[3:],
        title=str(meta["title"]),
        minutes=int(meta.get("minutes", 60)),
        pass_mark=float(meta.get("pass_mark", 0.8)),
        directory=directory,
    )


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
