"""The documentation site builds with --strict, and includes every lab's README and every notebook."""

import html
import json
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
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        link = ROOT / "docs" / "notebooks" / notebook.name
        assert link.resolve() == notebook.resolve(), f"docs/notebooks/{notebook.name} does not link to {notebook}"
        page = tmp_path / "site" / "notebooks" / notebook.stem / "index.html"
        assert page.is_file(), f"no docs page for {notebook.name} (add it to mkdocs.yml's nav)"
        title = json.loads(notebook.read_text())["cells"][0]["source"]
        heading = ("".join(title) if isinstance(title, list) else title).splitlines()[0].lstrip("# ").strip()
        assert heading in html.unescape(page.read_text()), f"the page of {notebook.name} does not show it"
