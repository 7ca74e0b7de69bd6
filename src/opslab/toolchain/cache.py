"""The build cache: ~/.cache/opslab/<component>/<version>/, with a manifest that proves it complete.

A component is written into ``<version>.partial/`` and renamed to ``<version>/`` only after its
manifest (size and sha256 of every file) is written, so an interrupted build never looks finished.
An entry whose files no longer match its manifest is corrupt and is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from opslab.primitives.files import write_atomic

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class CacheEntry:
    """Where one component version lives in the cache."""

    root: Path
    component: str
    version: str

    @property
    def path(self) -> Path:
        return self.root / self.component / self.version

    @property
    def partial(self) -> Path:
        return self.root / self.component / f"{self.version}.partial"

    @property
    def bin(self) -> Path:
        return self.path / "bin"

    @property
    def manifest(self) -> Path:
        return self.path / MANIFEST

    def begin(self) -> Path:
        """A clean staging directory for a new build of this entry."""
        if self.partial.exists():
            shutil.rmtree(self.partial)
        self.partial.mkdir(parents=True)
        return self.partial

    def commit(self, took_seconds: float) -> None:
        """Write the manifest of the staged files and move them into place."""
        files = {}
        for file in sorted(self.partial.rglob("*")):
            if file.is_file() and not file.is_symlink():
                rel = str(file.relative_to(self.partial))
                files[rel] = {"size": file.stat().st_size, "sha256": _sha256(file)}
        manifest = {
            "component": self.component,
            "version": self.version,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "took_seconds": round(took_seconds, 1),
            "files": files,
        }
        write_atomic(self.partial / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
        if self.path.exists():
            shutil.rmtree(self.path)
        self.partial.rename(self.path)

    def problem(self, *, deep: bool = False) -> str | None:
        """Why this entry cannot be used (missing, incomplete, corrupt), or None if it is sound.

        The quick check compares sizes; ``deep`` also compares sha256 digests.
        """
        if not self.manifest.is_file():
            return "not built" if not self.path.exists() else "incomplete (no manifest)"
        try:
            files = json.loads(self.manifest.read_text())["files"]
        except (ValueError, KeyError):
            return "corrupt manifest"
        for rel, meta in files.items():
            file = self.path / rel
            if not file.is_file():
                return f"corrupt: {rel} is missing"
            if file.stat().st_size != meta["size"]:
                return f"corrupt: {rel} has the wrong size"
            if deep and _sha256(file) != meta["sha256"]:
                return f"corrupt: {rel} does not match its checksum"
        return None

    def took_seconds(self) -> float | None:
        """How long the build of this entry took, from its manifest."""
        try:
            return float(json.loads(self.manifest.read_text())["took_seconds"])
        except (OSError, ValueError, KeyError):
            return None

    def discard_partial(self) -> None:
        if self.partial.exists():
            shutil.rmtree(self.partial)

    def prune_siblings(self, keep: int) -> list[Path]:
        """Remove this component's other finished versions but the ``keep`` newest (by build time);
        the removed. For components versioned by a digest of their sources, where every edit is a
        new version; a few are kept for other checkouts that share the cache."""
        siblings = [p for p in (self.root / self.component).iterdir()
                    if p.is_dir() and p != self.path and (p / MANIFEST).is_file()]  # fmt: skip
        siblings.sort(key=lambda p: (p / MANIFEST).stat().st_mtime, reverse=True)
        for old in siblings[keep:]:
            shutil.rmtree(old, ignore_errors=True)
        return siblings[keep:]

    def remove(self) -> None:
        for path in (self.path, self.partial):
            if path.exists():
                shutil.rmtree(path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
