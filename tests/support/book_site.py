"""The book of the real chapters, built once per test session and shared by the chapter, book and browser tests
(tests/chapters/; building executes every chapter, so it is worth doing only once)."""

import time
from pathlib import Path

import pytest

from minidiff.cli.book import build_book

REPO = Path(__file__).resolve().parents[2]
CHAPTERS = sorted((REPO / "chapters").glob("[0-9][0-9]_*.ipynb"))
BUILT: dict[str, Path] = {}  # "site" -> the folder, once built in this session
BUILD_SECONDS: dict[str, float] = {}


def built_book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site folder of the book of every chapter in chapters/ (quick mode), built on first use."""
    if not CHAPTERS:
        pytest.fail("no chapters in chapters/ to build a book from")
    if "site" not in BUILT:
        site = tmp_path_factory.mktemp("book") / "site"
        start = time.perf_counter()
        build_book(CHAPTERS, site, quick=True)
        BUILD_SECONDS["site"] = time.perf_counter() - start
        BUILT["site"] = site
    return BUILT["site"]
