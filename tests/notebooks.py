"""Running the notebooks in notebooks/ headless (nbclient), as the tests do, and keeping them
stored without outputs.

    python -m tests.notebooks strip notebooks/*.ipynb    # before committing a notebook you ran
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbformat import NotebookNode

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
CELL_TIMEOUT = 180
"""Seconds one cell may take (they take about a second; the first import of matplotlib more)."""


def execute(path: Path, env: Mapping[str, str] | None = None) -> NotebookNode:
    """Run every cell of ``path`` in a fresh kernel of this interpreter, in the notebook's folder; a
    cell that raises (an assertion of the notebook's own included) raises CellExecutionError."""
    notebook = nbformat.read(path, as_version=4)
    saved = dict(os.environ)
    # The kernel is this interpreter's (its folder first on PATH), with the given variables.
    os.environ.update({"PATH": f"{Path(sys.executable).parent}{os.pathsep}{saved.get('PATH', '')}", **(env or {})})
    os.environ["MPLBACKEND"] = "agg"
    try:
        client = NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}})  # fmt: skip
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return notebook


def printed(notebook: NotebookNode) -> str:
    """Everything the notebook's cells printed."""
    return "".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("name") == "stdout"
    )


def outputs_left(path: Path) -> list[str]:
    """The cells of ``path`` stored with outputs or execution counts (there should be none)."""
    notebook = nbformat.read(path, as_version=4)
    return [
        cell.get("id", str(i))
        for i, cell in enumerate(notebook.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]


def strip(path: Path) -> None:
    """Store ``path`` without outputs, execution counts or run metadata."""
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell.metadata = {}
    notebook.metadata = {k: v for k, v in notebook.metadata.items() if k in {"kernelspec", "language_info"}}
    nbformat.write(notebook, path)


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] != "strip":
        sys.exit("usage: python -m tests.notebooks strip NOTEBOOK...")
    for name in sys.argv[2:]:
        strip(Path(name))
