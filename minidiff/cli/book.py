"""`make book`: the course as a static HTML site that opens without a kernel and without the internet.

Each chapter in chapters/ is executed top to bottom (quick mode by default) with MINIDIFF_BOOK=1 set, which makes
every widget builder return a self-contained scrubber (precomputed frames, matplotlib's `to_jshtml`) instead of a
live ipywidget, so forward and reverse noise can still be scrubbed in the static page. The executed notebook is
exported with nbconvert's lab template, changed so that nothing is loaded from the internet:

- MathJax 2 is copied next to the pages from the `jupyter_server_mathjax` package and loaded by a relative path;
- require.js, the widget manager and mermaid (all loaded from a CDN by the stock template) are left out;
- a live widget left in a chapter (one that has no book mode) is replaced by a note saying where it runs.

Before a page is written it is checked by `remote_references`; the build fails with the offending URLs rather than
ship a page that needs the network. The site is built in a sibling folder (site.partial) and swapped in for the
old one only when complete, so a failed or interrupted build never leaves a half-written site.

    python -m minidiff.cli.book [--chapters chapters] [--out site] [--full]
"""

import argparse
import html
import os
import re
import shutil
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path

import jinja2
import jupyter_server_mathjax
import nbformat
from jupyter_client import KernelManager
from nbclient import NotebookClient
from nbconvert import HTMLExporter

REPO = Path(__file__).resolve().parents[2]  # minidiff/cli/book.py -> the repository
CELL_TIMEOUT_S = 600  # no single cell may hang longer than this
MATHJAX_SOURCE = Path(jupyter_server_mathjax.__file__).parent / "static"  # MathJax 2.7, fonts included
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = ('<p class="minidiff-live-widget"><em>An interactive widget is here in JupyterLab '
               "(<code>make lab</code>); the static book cannot run it.</em></p>")
REMOTE_URL = re.compile(r"^\s*(https?:)?//", re.IGNORECASE)
CSS_REMOTE_URL = re.compile(r"(url\(\s*['\"]?|@import\s+['\"])\s*(https?:)?//", re.IGNORECASE)

# The page template: nbconvert's lab template with every block that loads from a CDN replaced.
BOOK_TEMPLATE = r"""
{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_js_mathjax -%}
<script type="text/x-mathjax-config">
MathJax.Hub.Config({
  tex2jax: {inlineMath: [["$", "$"], ["\\(", "\\)"]], displayMath: [["$$", "$$"], ["\\[", "\\]"]],
            processEscapes: true, processEnvironments: true},
  TeX: {equationNumbers: {autoNumber: "AMS"}},
  "HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web", imageFont: null},
  messageStyle: "none"
});
</script>
<script src="mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"></script>
{%- endblock html_head_js_mathjax -%}
{%- block extra_css -%}
<style type="text/css">
  nav.minidiff-nav { max-width: 1100px; margin: 1em auto; font-family: sans-serif; }
  nav.minidiff-nav a { margin-right: 1.5em; }
</style>
{%- endblock extra_css -%}
{%- block body_header -%}
{{ super() }}
<nav class="minidiff-nav">{{ resources.book_nav }}</nav>
{%- endblock body_header -%}
{%- block body_footer -%}
<nav class="minidiff-nav">{{ resources.book_nav }}</nav>
{{ super() }}
{%- endblock body_footer -%}
"""


class RemoteReferenceFinder(HTMLParser):
    """Collects every URL in a page that the browser would fetch from another host.

    Links a reader follows (`<a href>`) are allowed; anything fetched to draw the page is not: src/href/data/poster
    attributes of other tags, and url(...) or @import in CSS (style elements and style attributes).
    """

    def __init__(self) -> None:
        super().__init__()
        self.remote: list[str] = []
        self.inside_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.inside_style = tag == "style"
        for name, value in attrs:
            if value is None:
                continue
            if tag != "a" and name in ("src", "href", "data", "poster", "srcset") and REMOTE_URL.match(value):
                self.remote.append(f"<{tag} {name}={value}>")
            if name == "style" and CSS_REMOTE_URL.search(value):
                self.remote.append(f"<{tag} style={value}>")

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self.inside_style = False

    def handle_data(self, data: str) -> None:
        if self.inside_style:
            self.remote += [f"css: ...{data[m.start():m.end() + 40]}..." for m in CSS_REMOTE_URL.finditer(data)]


def remote_references(page: str) -> list[str]:
    """The URLs (with their tag) that loading `page` would fetch from the internet; empty for an offline page."""
    finder = RemoteReferenceFinder()
    finder.feed(page)
    finder.close()
    return finder.remote


def chapter_title(notebook: nbformat.NotebookNode, fallback: str) -> str:
    """The text of the first Markdown heading in the notebook, or `fallback` when it has none."""
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return fallback


def execute_chapter(path: Path, quick: bool = True) -> nbformat.NotebookNode:
    """Run every cell of the chapter in a fresh kernel (cwd: its folder) with MINIDIFF_BOOK=1, and return it.

    The kernel's temporary files (its TMPDIR: training runs, caches) go to a folder of the build's own, removed when
    the chapter is done, whether or not the chapter removes them itself.
    """
    notebook = nbformat.read(path, as_version=4)
    env = dict(os.environ, MINIDIFF_BOOK="1")
    env.pop("MPLBACKEND", None)  # figures must reach the page: the kernel's inline backend, not Agg
    if quick:
        env["MINIDIFF_QUICK"] = "1"
    else:
        env.pop("MINIDIFF_QUICK", None)
    with tempfile.TemporaryDirectory(prefix="minidiff-kernel-") as folder:
        env["TMPDIR"] = str(Path(folder) / "tmp")  # where the kernel's tempfile module puts its files
        Path(env["TMPDIR"]).mkdir()
        kernel = local_kernel_manager(Path(folder))
        client = NotebookClient(notebook, km=kernel, timeout=CELL_TIMEOUT_S, store_widget_state=False,
                                resources={"metadata": {"path": str(path.parent)}})
        try:
            client.execute(env=env)  # raises CellExecutionError, naming the cell, if any cell fails
        finally:  # a kernel manager passed in is ours to stop: nbclient stops only the ones it makes
            if client.kc is not None:
                client.kc.stop_channels()
            if kernel.has_kernel:  # asked to exit, the kernel runs its exit handlers (TemporaryDirectory cleanups)
                kernel.shutdown_kernel()
    return notebook


def local_kernel_manager(folder: Path) -> KernelManager:
    """A python3 kernel that talks to the book builder over IPC sockets in `folder`, not TCP.

    Over TCP, ipykernel warns on every start that the traffic is unencrypted (13 warnings in one `make book`). The
    warning is right for TCP and does not apply here: IPC sockets are files only this user can open, and nothing
    listens on the network.
    """
    return KernelManager(kernel_name="python3", transport="ipc", ip=str(folder / "kernel"))


def replace_live_widgets(notebook: nbformat.NotebookNode) -> None:
    """Replace each live widget view (it would need a kernel, or a widget manager from a CDN) by a short note."""
    notebook.metadata.pop("widgets", None)
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if WIDGET_VIEW in output.get("data", {}):
                output["data"] = {"text/html": WIDGET_NOTE}


def navigation(pages: list[tuple[str, str]], index: int) -> str:
    """Links to the contents and to the previous and next chapter; `pages` holds (file name, title) pairs."""
    links = ['<a href="index.html">Contents</a>']
    if index > 0:
        links.append(f'<a href="{pages[index - 1][0]}">&larr; {html.escape(pages[index - 1][1])}</a>')
    if index + 1 < len(pages):
        links.append(f'<a href="{pages[index + 1][0]}">{html.escape(pages[index + 1][1])} &rarr;</a>')
    return " ".join(links)


def export_page(notebook: nbformat.NotebookNode, title: str, source_dir: Path, nav: str) -> str:
    """The executed chapter as one HTML page: narrative, equations, figures and scrubbers; raises if not offline."""
    exporter = HTMLExporter(template_name="lab", template_file="minidiff_book.html.j2", embed_images=True,
                            extra_loaders=[jinja2.DictLoader({"minidiff_book.html.j2": BOOK_TEMPLATE})])
    notebook.metadata["title"] = title
    page, _ = exporter.from_notebook_node(notebook, resources={"metadata": {"path": str(source_dir)},
                                                               "book_nav": nav})
    remote = remote_references(page)
    if remote:
        raise RuntimeError(f"the page '{title}' would load from the internet: {remote[:5]}; the book must open "
                           "offline: show animations with minidiff.views.widgets.html_player, not a bare to_jshtml()")
    return page


def index_page(pages: list[tuple[str, str]]) -> str:
    """The contents page: one link per chapter, in order."""
    items = "\n".join(f'  <li><a href="{name}">{html.escape(title)}</a></li>' for name, title in pages)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>minidiff: the course</title>
<style>
  body {{ max-width: 46em; margin: 3em auto; font-family: sans-serif; line-height: 1.5; }}
  ul.minidiff-chapters {{ list-style: none; padding-left: 0; font-size: 1.15em; }}
</style>
</head>
<body>
<h1>minidiff: diffusion models from scratch</h1>
<p>The chapters, executed and frozen: every widget is a scrubber over precomputed frames. For the live version,
run <code>make lab</code> and open the notebooks in <code>chapters/</code>.</p>
<ul class="minidiff-chapters">
{items}
</ul>
</body>
</html>
"""


def replace_folder(new: Path, target: Path) -> None:
    """Put the finished folder `new` in place of `target` (which may not exist yet)."""
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)


def write_site(chapters: list[Path], folder: Path, quick: bool) -> list[str]:
    """Execute and export each chapter into the empty `folder`, with index.html and MathJax; returns the file names."""
    shutil.copytree(MATHJAX_SOURCE, folder / "mathjax")
    executed = []
    for path in chapters:
        start = time.perf_counter()
        notebook = execute_chapter(path, quick=quick)
        replace_live_widgets(notebook)
        executed.append((path, notebook))
        print(f"{path.name}: executed in {time.perf_counter() - start:.1f} s", flush=True)
    pages = [(path.stem + ".html", chapter_title(notebook, path.stem)) for path, notebook in executed]
    for index, (path, notebook) in enumerate(executed):
        page = export_page(notebook, pages[index][1], path.parent, navigation(pages, index))
        (folder / pages[index][0]).write_text(page, encoding="utf-8")
    (folder / "index.html").write_text(index_page(pages), encoding="utf-8")
    return ["index.html"] + [name for name, _ in pages]


def build_book(chapters: list[Path], out_dir: Path, quick: bool = True) -> list[Path]:
    """Build the site in a sibling folder and swap it in for `out_dir` only once complete; returns the pages."""
    if not chapters:
        raise ValueError("no chapters to build: expected notebooks like chapters/01_forward_process.ipynb")
    building = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    try:
        names = write_site(chapters, building, quick)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)  # a failed build leaves the previous site as it was
        raise
    replace_folder(building, out_dir)
    return [out_dir / name for name in names]


def main(argv: list[str] | None = None) -> None:
    """`python -m minidiff.cli.book`: build site/ from chapters/ (what `make book` runs)."""
    parser = argparse.ArgumentParser(prog="python -m minidiff.cli.book", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chapters", type=Path, default=REPO / "chapters", help="folder of NN_name.ipynb chapters")
    parser.add_argument("--out", type=Path, default=REPO / "site", help="folder the site is written to")
    parser.add_argument("--full", action="store_true", help="run chapters in full mode instead of quick mode")
    args = parser.parse_args(argv)
    chapters = sorted(args.chapters.glob("[0-9][0-9]_*.ipynb"))
    written = build_book(chapters, args.out.resolve(), quick=not args.full)
    print(f"wrote {len(written)} pages; open {written[0]}")


if __name__ == "__main__":
    main()
