"""Every chapter runs top to bottom, and every committed chapter is clean (no outputs, no widget state).

Chapters run in quick mode (MINIDIFF_QUICK=1): training and sampling shrink, but no cell is skipped. The run is
the book build's (tests/support/book_site.py, shared with test_book.py and test_browser.py), so each chapter
executes twice per test session in all: once by nbclient for the book, once live in JupyterLab by the browser test.
"""

import json
from itertools import pairwise
from pathlib import Path

import nbformat
import pytest
from support.book_site import BUILD_SECONDS, CHAPTERS, built_book

pytestmark = pytest.mark.chapters  # executes every chapter: not part of `make check`

CHAPTERS_DIR = Path(__file__).resolve().parents[2] / "chapters"
CHAPTER_BUDGET_S = 240  # quick mode keeps each chapter well inside this on a 2-core CPU, on average


def test_there_are_chapters():
    names = [p.name for p in CHAPTERS]
    assert names, f"no chapters found in {CHAPTERS_DIR}"
    numbers = [int(n[:2]) for n in names]
    # a number may stay free for a chapter still being written, but each is used once, in order, from 01
    assert numbers[0] == 1 and all(a < b for a, b in pairwise(numbers)), \
        f"chapters must be numbered 01, 02, ..., each number once: {names}"


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
def test_chapter_removes_its_temporary_folders(path: Path):
    """A learner runs a chapter many times: its training runs (up to ~100 MB) go to a tempfile.TemporaryDirectory,
    removed when the kernel exits, never to tempfile.mkdtemp, whose folders nothing removes."""
    for index, cell in enumerate(json.loads(path.read_text())["cells"]):
        if cell["cell_type"] == "code":
            assert "mkdtemp(" not in "".join(cell["source"]), \
                f"{path.name} cell {index} makes a folder with mkdtemp: use tempfile.TemporaryDirectory"


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_runs_top_to_bottom(path: Path, tmp_path_factory):
    """Every chapter is executed once per test session, by the book build (tests/support/book_site.py: quick mode, every
    cell, nbclient), which raises CellExecutionError naming the chapter and the cell if any cell fails. Executing
    it a second time here would double the suite's longest part; the browser test (tests/chapters/test_browser.py) runs
    every chapter again, live, in JupyterLab."""
    site = built_book(tmp_path_factory)
    assert (site / f"{path.stem}.html").is_file(), f"{path.name} was not executed into the book"
    seconds = BUILD_SECONDS["site"]
    assert seconds < CHAPTER_BUDGET_S * len(CHAPTERS), f"the chapters took {seconds:.0f} s in quick mode"
