"""Writing files safely: atomically, and with mode 0600 for anything secret."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path


def write_atomic(path: Path, data: str | bytes, *, mode: int = 0o644) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename, with ``mode``.

    A reader never sees a half-written file, and a crash leaves the old content in place.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
        Path(tmp).replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            Path(tmp).unlink()
        raise
    return path


def write_private(path: Path, data: str | bytes) -> Path:
    """Write a credential, key or kubeconfig: mode 0600, atomically."""
    return write_atomic(path, data, mode=0o600)


def new_run_dir(root: Path, name: str) -> Path:
    """A fresh run directory ``root/<YYYYmmdd-HHMMSS>-<name>[-N]`` (never one that exists)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 1000):
        path = root / (f"{stamp}-{name}" if attempt == 1 else f"{stamp}-{name}-{attempt}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"cannot create a run directory for {name} in {root}")
