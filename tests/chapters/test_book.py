"""`make book`: every chapter executed and exported as a static page that needs neither a kernel nor the internet.

The checks on the real chapters share one build (tests/support/book_site.py) with the browser test, which also opens the
pages in Chromium with the network blocked and moves their scrubbers.
"""

import base64
import html
import io
import os
import re
import tempfile
from pathlib import Path

import nbformat
import pytest
from PIL import Image
from support.book_site import CHAPTERS, built_book
from support.browser import child_pids
from support.learner import OUTPUT_WIDTH_PX

from minidiff.cli.book import build_book, chapter_title, execute_chapter, remote_references

pytestmark = pytest.mark.book  # builds the book, executing every chapter: not part of `make check`

ANIMATION_FRAMES = re.compile(r"var frames = new Array\((\d+)\);")  # what matplotlib's to_jshtml writes per player
EMBEDDED_FRAME = re.compile(r'frames\[\d+\] = "data:image/png;base64,')
FIGURE = re.compile(r'<img[^>]*src="data:image/png;base64,([A-Za-z0-9+/=\s]+)"')


def test_remote_references_finds_what_a_browser_would_fetch():
    page = """
    <script src="https://cdn.example.org/require.js"></script>
    <link rel="stylesheet" href="http://cdn.example.org/font.css">
    <img src="//cdn.example.org/picture.png">
    <style>@import "https://fonts.example.org/a.css"; .x { background: url('https://example.org/b.png') }</style>
    <div style="background-image: url(http://example.org/c.png)"></div>
    """
    found = " ".join(remote_references(page))
    for url in ["require.js", "font.css", "picture.png", "a.css", "b.png", "c.png"]:
        assert url in found, f"{url} was not reported: {found}"


def test_remote_references_allows_links_and_local_files():
    page = """
    <a href="https://arxiv.org/abs/2006.11239">the DDPM paper</a>
    <script src="mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"></script>
    <img src="data:image/png;base64,iVBORw0KGgo=">
    <svg xmlns="http://www.w3.org/2000/svg"></svg>
    <style>.y { background: url(data:image/png;base64,AAAA) }</style>
    """
    assert remote_references(page) == []


def test_chapter_title_is_the_first_heading():
    cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_markdown_cell("Intro.\n\n## 1. Forward\n# b")]
    notebook = nbformat.v4.new_notebook(cells=cells)
    assert chapter_title(notebook, "fallback") == "1. Forward"
    assert chapter_title(nbformat.v4.new_notebook(), "fallback") == "fallback"


def write_chapter(path: Path, title: str, code: str) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.cells = [nbformat.v4.new_markdown_cell(f"# {title}\n\n$$\\bar\\alpha_t = \\prod_{{i \\le t}} (1 - \\beta_i)$$"),
                      nbformat.v4.new_code_cell(code)]
    nbformat.write(notebook, path)


def test_build_replaces_live_widgets_and_swaps_the_whole_site(tmp_path):
    chapters = tmp_path / "chapters"
    chapters.mkdir()
    write_chapter(chapters / "01_mode.ipynb", "1. Mode",
                  "import os\nprint('book', os.environ['MINIDIFF_BOOK'], 'quick', os.environ['MINIDIFF_QUICK'])")
    write_chapter(chapters / "02_live.ipynb", "2. Live", "import ipywidgets\nipywidgets.IntSlider()")
    site = tmp_path / "site"
    site.mkdir()
    (site / "stale.html").write_text("from an earlier build")

    written = build_book(sorted(chapters.glob("*.ipynb")), site)

    assert [p.name for p in written] == ["index.html", "01_mode.html", "02_live.html"]
    assert sorted(p.name for p in site.iterdir()) == ["01_mode.html", "02_live.html", "index.html", "mathjax"]
    assert not (tmp_path / "site.partial").exists() and not (tmp_path / "site.old").exists()
    assert "book 1 quick 1" in (site / "01_mode.html").read_text()
    live = (site / "02_live.html").read_text()
    assert 'class="minidiff-live-widget"' in live and "application/vnd.jupyter.widget-view+json" not in live
    assert 'href="01_mode.html"' in live and 'href="index.html"' in live  # navigation to the previous chapter
    assert (site / "mathjax" / "MathJax.js").is_file()


def test_chapters_run_in_kernels_on_local_sockets_without_a_tcp_warning(tmp_path, capfd):
    write_chapter(tmp_path / "01_transport.ipynb", "1. Transport",
                  "from ipykernel.kernelapp import IPKernelApp\nprint('transport', IPKernelApp.instance().transport)")
    children_before = set(child_pids(os.getpid()))
    executed = execute_chapter(tmp_path / "01_transport.ipynb")
    assert "transport ipc" in executed.cells[-1].outputs[0]["text"]
    assert set(child_pids(os.getpid())) <= children_before, "the chapter's kernel must be stopped once it has run"
    assert "without encryption" not in capfd.readouterr().err  # ipykernel's warning, for TCP alone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["01_transport.ipynb"], "no socket file left beside it"


def test_a_chapter_exits_normally_and_leaves_no_temporary_files(tmp_path):
    chapters = tmp_path / "chapters"
    chapters.mkdir()
    exited = tmp_path / "exited.txt"
    write_chapter(chapters / "01_scratch.ipynb", "1. Scratch", f"""import atexit, tempfile
from pathlib import Path
atexit.register(Path({str(exited)!r}).write_text, "the kernel ran its exit handlers")
kept = tempfile.TemporaryDirectory()  # removed by its own exit handler
forgotten = Path(tempfile.mkdtemp())  # removed by nothing the chapter does
(forgotten / "run.safetensors").write_bytes(bytes(1000))
print(tempfile.gettempdir())""")
    executed = execute_chapter(chapters / "01_scratch.ipynb")
    kernel_tmp = Path(executed.cells[-1].outputs[0]["text"].strip())
    assert kernel_tmp != Path(tempfile.gettempdir()), "the kernel must get a temporary folder of its own"
    assert not kernel_tmp.exists(), f"the chapter's temporary folder {kernel_tmp} was left behind"
    assert exited.read_text() == "the kernel ran its exit handlers", "the kernel was killed, not asked to exit"


def test_a_failing_chapter_leaves_the_previous_site_as_it_was(tmp_path):
    write_chapter(tmp_path / "01_fails.ipynb", "1. Fails", "raise RuntimeError('this chapter is broken')")
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("the previous build")
    with pytest.raises(Exception, match="this chapter is broken"):
        build_book([tmp_path / "01_fails.ipynb"], site)
    assert (site / "index.html").read_text() == "the previous build"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["01_fails.ipynb", "site"]


def test_index_lists_every_chapter_with_its_title(tmp_path_factory):
    index = (built_book(tmp_path_factory) / "index.html").read_text()
    links = re.findall(r'<li><a href="([^"]+)">([^<]+)</a></li>', index)
    assert [href for href, _ in links] == [p.stem + ".html" for p in CHAPTERS]
    for (_, title), path in zip(links, CHAPTERS, strict=True):
        assert html.unescape(title) == chapter_title(nbformat.read(path, as_version=4), path.stem)


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_page_loads_nothing_from_the_internet(path, tmp_path_factory):
    page = (built_book(tmp_path_factory) / f"{path.stem}.html").read_text()
    assert remote_references(page) == []
    for script in re.findall(r"<script[^>]*src=\"([^\"?]+)", page):
        assert (built_book(tmp_path_factory) / script).is_file(), f"{script} is referenced but not in the site"


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_page_has_a_scrubber_with_several_frames(path, tmp_path_factory):
    page = (built_book(tmp_path_factory) / f"{path.stem}.html").read_text()
    frame_counts = [int(n) for n in ANIMATION_FRAMES.findall(page)]
    assert frame_counts, f"{path.stem}: no scrubber (to_jshtml player) in the page"
    assert max(frame_counts) >= 3, f"{path.stem}: scrubbers hold only {frame_counts} frames"
    assert len(EMBEDDED_FRAME.findall(page)) == sum(frame_counts), "every frame must be embedded in the page"
    assert "minidiff-live-widget" not in page, f"{path.stem}: a live widget has no book mode"


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_page_has_its_equations_for_mathjax(path, tmp_path_factory):
    notebook = nbformat.read(path, as_version=4)
    markdown = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    equations = re.findall(r"\$\$.+?\$\$|\$[^$\n]+\$", markdown, flags=re.DOTALL)
    assert equations, f"{path.stem} has no equation in its Markdown"
    page = (built_book(tmp_path_factory) / f"{path.stem}.html").read_text()
    assert "mathjax/MathJax.js" in page
    assert any(equation.replace("\n", " ")[:40] in page.replace("\n", " ") for equation in equations), \
        f"{path.stem}: none of its equations reached the page"


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_every_figure_fits_a_notebook_column(path, tmp_path_factory):
    """JupyterLab shrinks a figure wider than its output column, resampling (blurring) it: each must fit."""
    page = (built_book(tmp_path_factory) / f"{path.stem}.html").read_text()
    widths = [Image.open(io.BytesIO(base64.b64decode(data))).width for data in FIGURE.findall(page)]
    assert widths, f"{path.stem}: no figure found"
    assert max(widths) <= OUTPUT_WIDTH_PX, f"{path.stem}: figures {widths} px wide; at most {OUTPUT_WIDTH_PX} fit"
