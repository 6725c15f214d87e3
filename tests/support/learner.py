"""What a learner does in JupyterLab, as tests/chapters/test_browser.py does it through Playwright.

`exercise_notebook`: open the notebook, Run > Run All Cells, wait for the kernel, then operate the chapter's main
widget (move its slider, pick another drop-down option, or press its button) and compare screenshots of its picture
before and after. It returns the problems found rather than asserting, so the harness itself can be tested on
notebooks that are broken on purpose. Screenshots are kept in test-artifacts/browser/ (git-ignored).
"""

import io
import time
from pathlib import Path

from PIL import Image, ImageChops

from support.browser import JupyterLab

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"

# The widget the test operates: the one a chapter marks with add_class("minidiff-main"), else the first output
# (in page order) that holds a slider, a drop-down or a button.
MARKED_WIDGET = ".jp-OutputArea-output:has(.minidiff-main)"
ANY_WIDGET = ".jp-OutputArea-output:has(.widget-slider [role=slider], .widget-dropdown select, button.jupyter-button)"


def record_errors(page) -> list[str]:
    """Start collecting the page's JavaScript errors (uncaught exceptions and console.error) into a list."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
    page.on("console", lambda message: errors.append(f"console.error: {message.text} (at {message.location['url']})")
            if message.type == "error" else None)
    return errors


def kernel_is_done(page) -> bool:
    """True when the notebook's kernel is idle and no cell is queued or running ([*])."""
    return page.evaluate("""() => {
        const indicator = document.querySelector('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator');
        const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
        return indicator !== null && indicator.dataset.status === 'idle'
            && prompts.every(prompt => !prompt.textContent.includes('*'));
    }""")


def wait_until_done(page, timeout_s: float) -> None:
    """Wait until `kernel_is_done` holds twice in a row, one second apart; raise TimeoutError after timeout_s."""
    deadline = time.monotonic() + timeout_s
    done_before = False
    while time.monotonic() < deadline:
        done_now = kernel_is_done(page)
        if done_now and done_before:
            return
        done_before = done_now
        page.wait_for_timeout(1000)
    raise TimeoutError(f"the kernel was still busy after {timeout_s:.0f} s")


def cell_tracebacks(page) -> list[str]:
    """The text of every output in the notebook that shows a Python traceback."""
    outputs = page.locator(".jp-Notebook .jp-OutputArea-output").all_inner_texts()
    return [text[:2000] for text in outputs if "Traceback" in text]


def log_console_tracebacks(page) -> list[str]:
    """Tracebacks in JupyterLab's log console, where errors raised in widget callbacks go.

    A learner sees them only as a count in the status bar; the log console is opened to read them.
    """
    status_item = page.locator(".jp-LogConsoleStatusItem")
    if status_item.count() == 0 or not status_item.first.is_visible():
        return []
    status_item.first.click()
    panel = page.locator(".jp-LogConsolePanel")
    panel.first.wait_for(timeout=10_000)
    page.wait_for_timeout(500)
    text = panel.first.inner_text()
    return [text[:2000]] if "Traceback" in text else []


def main_widget(page):
    """The output area holding the chapter's main widget, or None when the notebook shows no widget."""
    for selector in (MARKED_WIDGET, ANY_WIDGET):
        found = page.locator(selector)
        if found.count():
            return found.first
    return None


def widget_picture(widget):
    """The largest image in the widget's output (an ipywidgets Image, a figure or a canvas)."""
    pictures = widget.locator("img, canvas").all()
    if not pictures:
        return widget
    areas = [(box["width"] * box["height"] if box else 0) for box in (p.bounding_box() for p in pictures)]
    return pictures[areas.index(max(areas))]


def operate(page, widget) -> str:
    """Do what a learner does with the widget: drag its slider far along, pick another option, or press its button.

    Returns what was done, e.g. "slider 't' moved from 0 to 699".
    """
    slider = widget.locator(".widget-slider [role=slider]")
    if slider.count():
        handle = slider.first
        before = handle.get_attribute("aria-valuenow")
        track = widget.locator(".widget-slider .noUi-target").first.bounding_box()
        page.mouse.click(track["x"] + 0.7 * track["width"], track["y"] + track["height"] / 2)
        if handle.get_attribute("aria-valuenow") == before:  # a click on the track did not move it: use the keys
            handle.focus()
            page.keyboard.press("End")
        return f"slider moved from {before} to {handle.get_attribute('aria-valuenow')}"
    dropdown = widget.locator(".widget-dropdown select")
    if dropdown.count():
        options = dropdown.first.locator("option").all_inner_texts()
        before = dropdown.first.input_value()
        choice = next(label for label in reversed(options) if label != before)
        dropdown.first.select_option(label=choice)
        return f"drop-down changed from {before!r} to {choice!r}"
    button = widget.locator("button.jupyter-button").first
    label = button.inner_text()
    button.click()
    return f"button {label!r} pressed"


def png_differs(first: bytes, second: bytes) -> bool:
    """True when the two screenshots differ in size or in any pixel."""
    a, b = Image.open(io.BytesIO(first)).convert("RGB"), Image.open(io.BytesIO(second)).convert("RGB")
    return a.size != b.size or ImageChops.difference(a, b).getbbox() is not None


def exercise_notebook(context, lab: JupyterLab, name: str, n_code_cells: int, artifact_prefix: str,
                      run_timeout_s: float, change_timeout_s: float = 60.0) -> list[str]:
    """Open `name` in JupyterLab, run all cells, operate its main widget; return the problems found (none: pass).

    Screenshots go to test-artifacts/browser/<artifact_prefix>-{before,after,page}.png.
    """
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = context.new_page()
    errors = record_errors(page)
    problems: list[str] = []
    try:
        page.goto(lab.notebook_url(name))
        page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for(timeout=60_000)
        lab.wait_for_kernel(page, name, timeout_s=60)
        wait_until_done(page, timeout_s=60)  # and the page knows it
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        wait_until_done(page, timeout_s=run_timeout_s)
        prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
        n_run = sum(any(ch.isdigit() for ch in prompt) for prompt in prompts)
        if n_run < n_code_cells:
            problems.append(f"only {n_run} of {n_code_cells} code cells ran")
        problems += [f"traceback in a cell output:\n{text}" for text in cell_tracebacks(page)]
        widget = main_widget(page)
        if widget is None:
            problems.append("no widget (slider, drop-down or button) in any output")
        else:
            problems += check_widget_changes(page, widget, artifact_prefix, change_timeout_s)
        problems += [f"traceback in the log console:\n{text}" for text in log_console_tracebacks(page)]
    finally:
        page.screenshot(path=str(ARTIFACTS / f"{artifact_prefix}-page.png"))
        page.close()
        lab.shut_down_kernels()
    return problems + [f"JavaScript error: {error}" for error in errors]


def check_widget_changes(page, widget, artifact_prefix: str, timeout_s: float) -> list[str]:
    """Screenshot the widget's picture, check it is still, operate the widget, and check the picture changes."""
    picture = widget_picture(widget)
    before = picture.screenshot(path=str(ARTIFACTS / f"{artifact_prefix}-before.png"))
    page.wait_for_timeout(1000)
    if png_differs(before, picture.screenshot()):
        return ["the widget's picture changes by itself, so a change after operating it would prove nothing"]
    action = operate(page, widget)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        page.wait_for_timeout(1000)
        if kernel_is_done(page) and png_differs(before, picture.screenshot()):
            page.wait_for_timeout(1000)  # let the last frame land before the screenshot that is kept
            picture.screenshot(path=str(ARTIFACTS / f"{artifact_prefix}-after.png"))
            return []
    picture.screenshot(path=str(ARTIFACTS / f"{artifact_prefix}-after.png"))
    return [f"the widget's picture did not change within {timeout_s:.0f} s after: {action}"]
