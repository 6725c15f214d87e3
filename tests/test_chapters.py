"""Every chapter runs top to bottom, and every committed chapter is clean (no outputs, no widget state).

Chapters run in quick mode (MINIDIFF_QUICK=1): training and sampling shrink, but no cell is skipped.
"""

import json
import os
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

CHAPTERS_DIR = Path(__file__).resolve().parent.parent / "chapters"
CHAPTERS = sorted(CHAPTERS_DIR.glob("[0-9][0-9]_*.ipynb"))
CELL_TIMEOUT_S = 600  # no single cell may hang longer than this
CHAPTER_BUDGET_S = 420  # quick mode keeps each chapter well inside this on a 2-core CPU


def test_there_are_chapters():
    names = [p.name for p in CHAPTERS]
    assert names, f"no chapters found in {CHAPTERS_DIR}"
    numbers = [int(n[:2]) for n in names]
    assert numbers == list(range(1, len(numbers) + 1)), f"chapters must be numbered 01, 02, ... without gaps: {names}"


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_is_committed_clean(path: Path):
    notebook = json.loads(path.read_text())
    assert "widgets" not in notebook.get("metadata", {}), f"{path.name} holds widget state: clear it before committing"
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] == "code":
            assert not cell.get("outputs"), f"{path.name} cell {index} holds outputs: strip them before committing"
            assert cell.get("execution_count") is None, f"{path.name} cell {index} holds an execution count"
    nbformat.validate(nbformat.reads(path.read_text(), as_version=4))


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_runs_top_to_bottom(path: Path, monkeypatch):
    monkeypatch.setenv("MINIDIFF_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(CHAPTERS_DIR)}})
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails
    seconds = time.perf_counter() - start
    executed = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in executed), "every code cell must have run"
    assert seconds < CHAPTER_BUDGET_S, f"{path.name} took {seconds:.0f} s in quick mode (budget {CHAPTER_BUDGET_S} s)"
