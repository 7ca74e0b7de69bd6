"""The documentation site builds with --strict, and includes every lab's README."""

import os
import subprocess
import sys
from pathlib import Path

from opslab.grading.labs import all_labs

ROOT = Path(__file__).resolve().parents[2]


def test_mkdocs_builds_strictly_with_every_lab(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for lab in all_labs(ROOT):
        page = tmp_path / "site" / "labs" / f"lab-{lab.number:02d}" / "index.html"
        assert page.is_file(), f"no docs page for {lab.name}"
        assert lab.title.split(":")[0] in page.read_text(), f"the page of {lab.name} does not include its README"
