"""Widgets proven in a real browser: every chapter run in JupyterLab in headless Chromium, and the static book opened
offline.

For each chapter: JupyterLab (127.0.0.1, random token) opens it, Run > Run All Cells runs it in quick mode, then the
chapter's main widget is operated (slider moved, drop-down changed or button pressed) and the picture it shows must
change, keeping its size, with no Python traceback (in a cell or in the log console, where widget callbacks report)
and no JavaScript error. On the way (tests/support/learner.py): every picture is shown at its own size or a
whole-number zoom, no text field or slider readout cuts its text, every cell that ran over 10 s shows a progress bar,
and a prompt box answers a prompt the model cannot read (a word outside its vocabulary, or no character of the
byte-pair alphabet) with the whole error in its message area, the previous picture gone or marked stale. The
harness is first tested on throwaway notebooks: one that works, and others broken on purpose that it must catch.
Screenshots are kept in test-artifacts/browser/.

Needs Debian's chromium and Playwright's Python package (see README); without them these tests are skipped, except
under CI=true, where they fail.
"""

import time
from pathlib import Path

import nbformat
import pytest
from support import browser, learner
from support.book_site import CHAPTERS, built_book

pytestmark = pytest.mark.browser  # drives Chromium: not part of `make check`

RUN_TIMEOUT_S = 480  # quick mode keeps a chapter inside 420 s on 2 cores (see test_chapters.py), plus the browser
SELFTEST_TIMEOUT_S = 60
WIDGET_CELL = """import io
import ipywidgets as widgets
import numpy as np
from PIL import Image as PILImage

def frame(t):
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, 48)[None, :].repeat(48, 0)
    noisy = (1 - t / 10) * ramp + (t / 10) * rng.uniform(0, 255, (48, 48))
    buffer = io.BytesIO()
    PILImage.fromarray(noisy.astype(np.uint8)).resize((144, 144), PILImage.NEAREST).save(buffer, format="png")
    return buffer.getvalue()

slider = widgets.IntSlider(value=0, min=0, max=10, description="t")
image = widgets.Image(value=frame(0), format="png", layout=widgets.Layout(width="144px"))
def show(change):
    image.value = frame(change["new"])
slider.observe(show, names="value")
widgets.VBox([slider, image])"""
CARELESS_CELL = f"""import io
import time
import ipywidgets as widgets
import numpy as np
from PIL import Image as PILImage

time.sleep({learner.LONG_CELL_S + 2})  # long work, and no progress bar

def png(value):
    buffer = io.BytesIO()
    PILImage.fromarray(np.full((40, 50), value, np.uint8)).save(buffer, format="png")
    return buffer.getvalue()

picture = widgets.Image(value=png(0), format="png", layout=widgets.Layout(width="100%"))  # stretched to the cell
seed = widgets.IntText(value=12345, description="seed", layout=widgets.Layout(width="90px"))  # too narrow for 12345
prompt = widgets.Text(value="a blue circle", description="prompt")
button = widgets.Button(description="Generate")
message = widgets.Label()  # one line, cut at its edge, and not the message area

def generate(_):
    if "balloon" in prompt.value:
        message.value = "the word 'balloon' is not in the vocabulary"  # the old picture stays, unmarked
    else:
        picture.value = png(255)

button.on_click(generate)
widgets.VBox([widgets.HBox([prompt, seed, button]), message, picture])"""
SELFTEST_NOTEBOOKS = {  # name -> the widget cell: one that works, and others broken the way chapters could break
    "working.ipynb": WIDGET_CELL,
    "raises.ipynb": WIDGET_CELL.replace('image.value = frame(change["new"])', "1 / 0"),
    "frozen.ipynb": WIDGET_CELL.replace('image.value = frame(change["new"])', "pass"),
    "careless.ipynb": CARELESS_CELL,
}


def code_cell_count(path: Path) -> int:
    """How many code cells with some code the notebook has (each must show an execution count after Run All)."""
    notebook = nbformat.read(path, as_version=4)
    return sum(1 for cell in notebook.cells if cell.cell_type == "code" and cell.source.strip())


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    browser.require_browser()
    with browser.chromium(tmp_path_factory.mktemp("chromium")) as (context, blocked):
        yield context, blocked


@pytest.fixture(scope="module")
def selftest_lab(tmp_path_factory, chromium):
    notebooks = tmp_path_factory.mktemp("selftest-notebooks")
    for name, widget_cell in SELFTEST_NOTEBOOKS.items():
        notebook = nbformat.v4.new_notebook()
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        notebook.cells = [nbformat.v4.new_markdown_cell("# A throwaway chapter\n\n$x_t = \\sqrt{\\bar\\alpha_t}x_0$"),
                          nbformat.v4.new_code_cell(widget_cell)]
        nbformat.write(notebook, notebooks / name)
    lab = browser.JupyterLab(notebooks, tmp_path_factory.mktemp("selftest-lab"))
    yield lab
    lab.stop()


@pytest.fixture(scope="module")
def chapters_lab(tmp_path_factory, chromium):
    lab = browser.JupyterLab(CHAPTERS[0].parent, tmp_path_factory.mktemp("chapters-lab"))
    yield lab
    lab.stop()


def exercise_selftest(chromium, lab, name: str) -> list[str]:
    context, _ = chromium
    return learner.exercise_notebook(context, lab, name, n_code_cells=1, artifact_prefix=f"selftest-{Path(name).stem}",
                                     run_timeout_s=SELFTEST_TIMEOUT_S, change_timeout_s=5)


def test_a_missing_browser_skips_here_and_fails_under_ci(monkeypatch):
    monkeypatch.setattr(browser, "chromium_path", lambda: None)
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y chromium"):
        browser.require_browser()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y chromium"):
        browser.require_browser()


def test_harness_passes_a_working_widget(chromium, selftest_lab):
    assert exercise_selftest(chromium, selftest_lab, "working.ipynb") == []
    assert (learner.ARTIFACTS / "selftest-working-after.png").exists()


def test_harness_catches_a_traceback_in_a_widget_callback(chromium, selftest_lab):
    problems = exercise_selftest(chromium, selftest_lab, "raises.ipynb")
    assert any("log console" in p and "ZeroDivisionError" in p for p in problems), problems


def test_harness_catches_a_picture_that_does_not_change(chromium, selftest_lab):
    problems = exercise_selftest(chromium, selftest_lab, "frozen.ipynb")
    assert any("did not change" in p for p in problems), problems


def test_harness_catches_what_a_learner_should_not_meet(chromium, selftest_lab):
    problems = "\n".join(exercise_selftest(chromium, selftest_lab, "careless.ipynb"))
    assert "not its own size or a whole-number zoom" in problems, problems  # the stretched picture
    assert 'a text field holding "12345"' in problems, problems  # the narrow seed field
    assert "with no progress bar" in problems, problems  # the long cell
    assert "with no message area" in problems, problems  # the error said on a cut line, the old picture kept


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_widget_works_in_jupyterlab(path: Path, chromium, chapters_lab):
    context, blocked = chromium
    blocked_before = len(blocked)
    on_disk = path.read_bytes()
    start = time.perf_counter()
    problems = learner.exercise_notebook(context, chapters_lab, path.name, n_code_cells=code_cell_count(path),
                                         artifact_prefix=path.stem, run_timeout_s=RUN_TIMEOUT_S)
    print(f"{path.name}: {time.perf_counter() - start:.1f} s in JupyterLab")
    assert path.read_bytes() == on_disk, f"running {path.name} in JupyterLab changed the file on disk"
    assert problems == [], f"{path.name} (screenshots in {learner.ARTIFACTS}):\n" + "\n".join(problems)
    assert blocked[blocked_before:] == [], "JupyterLab tried to reach the internet"


HARMLESS_BOOK_ERRORS = (  # the two requests MathJax 2 makes that fail offline without changing what is shown
    "font at 'about:blank'", "(at about:blank)",  # its probe of web-font support, refused on a file:// page
    "/mathjax/fonts/HTML-CSS/TeX/otf/",  # fonts for the hidden MathML it adds for screen readers, not shipped
)


def test_book_scrubbers_move_offline(tmp_path_factory, chromium):
    site = built_book(tmp_path_factory)
    context, blocked = chromium
    learner.ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = context.new_page()
    errors = learner.record_errors(page)
    try:
        page.goto((site / "index.html").as_uri())
        links = page.locator("ul.minidiff-chapters a").all()
        assert [link.get_attribute("href") for link in links] == [p.stem + ".html" for p in CHAPTERS]
        for path in CHAPTERS:
            page.goto((site / f"{path.stem}.html").as_uri())
            page.wait_for_function("() => window.MathJax && MathJax.Hub && MathJax.Hub.queue.pending === 0",
                                   timeout=30_000)
            assert page.locator(".MathJax").count() > 0, f"{path.stem}: no equation typeset by MathJax"
            assert page.locator(".MathJax_Error, merror").count() == 0, f"{path.stem}: MathJax could not typeset"
            frame = page.locator(".animation img").first
            slider = page.locator(".animation input[type=range]").first
            before = (frame.get_attribute("src"), slider.input_value())
            frame.screenshot(path=str(learner.ARTIFACTS / f"book-{path.stem}-before.png"))
            page.locator(".animation button[title='Next frame']").first.click()
            after = (frame.get_attribute("src"), slider.input_value())
            frame.screenshot(path=str(learner.ARTIFACTS / f"book-{path.stem}-after.png"))
            assert after[1] != before[1], f"{path.stem}: the scrubber's slider did not move on 'Next frame'"
            assert after[0] != before[0], f"{path.stem}: the scrubber's frame did not change on 'Next frame'"
    finally:
        page.close()
    assert blocked == [], "the book tried to load from the internet"
    real_errors = [e for e in errors if not any(harmless in e for harmless in HARMLESS_BOOK_ERRORS)]
    assert real_errors == [], real_errors
