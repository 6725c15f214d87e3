"""`make lab` opens the learner's own copies of the chapters (my-chapters/, git-ignored), never chapters/ itself.

A learner runs, edits and saves chapters in JupyterLab, which autosaves outputs into the file it has open. Those
files must not be the committed chapters (test_chapters.py checks that they hold no outputs), and a learner's saved
work must never be overwritten. `make lab-copies` (run by `make lab` before JupyterLab starts) copies each chapter
once, when its copy is missing, so these tests run it in a folder holding the Makefile and two chapters.
"""

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def make_lab_copies(folder: Path) -> str:
    done = subprocess.run(["make", "-s", "lab-copies"], cwd=folder, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def checkout_with_two_chapters(tmp_path: Path) -> Path:
    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    (tmp_path / "chapters").mkdir()
    for path in sorted((REPO / "chapters").glob("[0-9][0-9]_*.ipynb"))[:2]:
        shutil.copy(path, tmp_path / "chapters" / path.name)
    return tmp_path


def test_lab_copies_each_chapter_once_and_keeps_a_learners_edits(tmp_path):
    folder = checkout_with_two_chapters(tmp_path)
    chapters = sorted((folder / "chapters").glob("*.ipynb"))
    printed = make_lab_copies(folder)
    copies = sorted((folder / "my-chapters").glob("*.ipynb"))
    assert [c.name for c in copies] == [c.name for c in chapters]
    assert all(copy.read_bytes() == chapter.read_bytes() for copy, chapter in zip(copies, chapters))
    assert "delete its copy" in printed  # says how to get a fresh copy

    copies[0].write_text("a learner's saved work")  # what JupyterLab's autosave does to the open chapter
    copies[1].unlink()  # the way to ask for a fresh copy
    make_lab_copies(folder)
    assert copies[0].read_text() == "a learner's saved work"
    assert copies[1].read_bytes() == chapters[1].read_bytes()
    assert chapters[0].read_bytes() == (REPO / "chapters" / chapters[0].name).read_bytes()  # the course untouched


def test_lab_copies_are_ignored_by_git_and_lab_opens_them():
    ignored = subprocess.run(["git", "check-ignore", "-q", "my-chapters/01_forward_process.ipynb"], cwd=REPO)
    assert ignored.returncode == 0, "my-chapters/ must be in .gitignore: a learner's work is not the course's"
    dry_run = subprocess.run(["make", "-n", "-o", ".venv/.installed-runtime", "lab"], cwd=REPO, capture_output=True,
                             text=True, timeout=60)
    jupyter = [line for line in dry_run.stdout.splitlines() if "jupyter lab" in line]
    assert len(jupyter) == 1 and "--notebook-dir my-chapters" in jupyter[0], dry_run.stdout
