"""What a learner does in JupyterLab, as tests/chapters/test_browser.py does it through Playwright.

`exercise_notebook`: open the notebook, Run > Run All Cells (timing each cell), wait for the kernel, then operate the
chapter's main widget (move its slider, pick another drop-down option, or press its button) and compare screenshots
of its picture before and after. On the way it checks what a learner sees:

- every picture in an output is shown at its own size or an integer zoom of it (a browser that resamples a pixel-art
  picture by 1.24x blurs it), and operating the main widget does not change its picture's size (the page would jump);
- no text field, slider readout or label is too narrow for its text (a seed box showing "C" for 0);
- every cell that ran longer than LONG_CELL_S shows a progress bar (a widget) in its output;
- each output with a prompt box and a button (a text-to-image or inpainting box) answers a prompt the model cannot
  draw with its error whole in the message area, and takes the previous picture away or marks it stale.

It returns the problems found rather than asserting, so the harness itself can be tested on notebooks that are
broken on purpose. Screenshots are kept in test-artifacts/browser/ (git-ignored).
"""

import io
import re
import time
from pathlib import Path

from PIL import Image, ImageChops

from support.browser import JupyterLab

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"

# The widget the test operates: the one a chapter marks with add_class("minidiff-main"), else the first output
# (in page order) that holds a slider, a drop-down or a button.
MARKED_WIDGET = ".jp-OutputArea-output:has(.minidiff-main)"
ANY_WIDGET = ".jp-OutputArea-output:has(.widget-slider [role=slider], .widget-dropdown select, button.jupyter-button)"
PROMPT_BOX = ".jp-OutputArea-output:has(.widget-text input[type=text]):has(button.jupyter-button)"
LONG_CELL_S = 10.0  # a cell that runs longer than this must show a progress bar
OUTPUT_WIDTH_PX = 848  # JupyterLab's output column in the test's 1280-px window, file browser open: wider is shrunk
PROGRESS = ".widget-hprogress, .widget-vprogress, progress"  # an ipywidgets progress bar (tqdm.auto's), or HTML's
# tqdm's bar drawn as text (on stderr): "40%|####      | 2/5 [00:03<00:04", or with no total "60step [00:30, 2.0step/s]"
TEXT_PROGRESS = re.compile(r"\d+%\||\[\d+:\d\d[<,]")
# prompts a model cannot read, tried in turn: a word outside the word-level vocabulary (the Shapes text models),
# then characters outside the byte-pair alphabet (the emoji model, which reads any word)
UNREADABLE_PROMPTS = ("a red balloon", "☃☃")


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


def running_cell(page) -> int | None:
    """The index (among all cells) of the cell that runs now: the first one whose prompt shows [*]."""
    return page.evaluate("""() => {
        const cells = [...document.querySelectorAll('.jp-Notebook .jp-Cell')];
        const index = cells.findIndex(cell => (cell.querySelector('.jp-InputPrompt')?.textContent ?? '').includes('*'));
        return index < 0 ? null : index;
    }""")


def wait_until_done(page, timeout_s: float, timings: dict[int, float] | None = None) -> None:
    """Wait until `kernel_is_done` holds twice in a row, one second apart; raise TimeoutError after timeout_s.

    timings, if given, gets the seconds each cell (by index) was seen running, to within the one-second polls.
    """
    deadline = time.monotonic() + timeout_s
    done_before, last = False, time.monotonic()
    while time.monotonic() < deadline:
        if timings is not None:
            index, now = running_cell(page), time.monotonic()
            if index is not None:
                timings[index] = timings.get(index, 0.0) + now - last
            last = now
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
        timings: dict[int, float] = {}
        wait_until_done(page, timeout_s=run_timeout_s, timings=timings)
        prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
        n_run = sum(any(ch.isdigit() for ch in prompt) for prompt in prompts)
        if n_run < n_code_cells:
            problems.append(f"only {n_run} of {n_code_cells} code cells ran")
        problems += [f"traceback in a cell output:\n{text}" for text in cell_tracebacks(page)]
        problems += pictures_not_at_an_integer_zoom(page) + clipped_text(page) + long_cells_without_progress(page, timings)
        widget = main_widget(page)
        if widget is None:
            problems.append("no widget (slider, drop-down or button) in any output")
        else:
            problems += check_widget_changes(page, widget, artifact_prefix, change_timeout_s)
        for box in page.locator(PROMPT_BOX).all():  # after the main widget: this leaves an error in its box
            problems += check_prompt_error(page, box, error_timeout_s=change_timeout_s)
        problems += [f"traceback in the log console:\n{text}" for text in log_console_tracebacks(page)]
    finally:
        page.screenshot(path=str(ARTIFACTS / f"{artifact_prefix}-page.png"))
        page.close()
        lab.shut_down_kernels()
    return problems + [f"JavaScript error: {error}" for error in errors]


def settled_screenshot(page, picture, tries: int = 10) -> bytes | None:
    """A screenshot of the picture once two taken a second apart agree (the page may still be scrolling to the
    last cell run); None if they never do."""
    shot = picture.screenshot()
    for _ in range(tries):
        page.wait_for_timeout(1000)
        shot, previous = picture.screenshot(), shot
        if not png_differs(previous, shot):
            return shot
    return None


def check_widget_changes(page, widget, artifact_prefix: str, timeout_s: float) -> list[str]:
    """Screenshot the widget's picture, check it is still, operate the widget, and check the picture changes (and
    keeps its size: a picture that changes size makes the page jump under the learner's pointer)."""
    picture = widget_picture(widget)
    size_before = picture.bounding_box()
    before = settled_screenshot(page, picture)
    if before is None:
        return ["the widget's picture changes by itself, so a change after operating it would prove nothing"]
    (ARTIFACTS / f"{artifact_prefix}-before.png").write_bytes(before)
    action = operate(page, widget)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        page.wait_for_timeout(1000)
        if kernel_is_done(page) and png_differs(before, picture.screenshot()):
            page.wait_for_timeout(1000)  # let the last frame land before the screenshot that is kept
            picture.screenshot(path=str(ARTIFACTS / f"{artifact_prefix}-after.png"))
            size_after = picture.bounding_box()
            if (round(size_after["width"]), round(size_after["height"])) != (
                    round(size_before["width"]), round(size_before["height"])):
                return [f"the widget's picture changed size after {action}: {size_before['width']:.0f}x"
                        f"{size_before['height']:.0f} -> {size_after['width']:.0f}x{size_after['height']:.0f}"]
            return []
    picture.screenshot(path=str(ARTIFACTS / f"{artifact_prefix}-after.png"))
    return [f"the widget's picture did not change within {timeout_s:.0f} s after: {action}"]


def pictures_not_at_an_integer_zoom(page) -> list[str]:
    """Every visible picture in an output whose displayed size is not its own size times a whole number."""
    shown = page.evaluate("""() => [...document.querySelectorAll('.jp-OutputArea-output img')]
        .filter(img => img.complete && img.naturalWidth > 0 && img.getBoundingClientRect().width > 0)
        .map(img => {
            const box = img.getBoundingClientRect();
            const cell = [...document.querySelectorAll('.jp-Notebook .jp-Cell')].findIndex(c => c.contains(img));
            return [cell, img.naturalWidth, img.naturalHeight, box.width, box.height];
        })""")
    problems = []
    for cell, width, height, shown_width, shown_height in shown:
        zoom = max(1, round(shown_width / width))
        if abs(shown_width - zoom * width) > 1 or abs(shown_height - zoom * height) > 1:
            problems.append(f"cell {cell}: a {width}x{height} picture is shown at {shown_width:.0f}x{shown_height:.0f} "
                            f"({shown_width / width:.2f}x): not its own size or a whole-number zoom, so it is resampled")
    return problems


def clipped_text(page) -> list[str]:
    """Text fields too narrow for their value, and slider readouts or labels too narrow for their text."""
    return page.evaluate("""() => {
        const found = [];
        const context = document.createElement('canvas').getContext('2d');
        for (const input of document.querySelectorAll('.jp-OutputArea-output input[type=text], '
                                                      + '.jp-OutputArea-output input[type=number]')) {
            const style = getComputedStyle(input);
            context.font = `${style.fontStyle} ${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
            const spinner = input.type === 'number' ? 16 : 0;  // the up/down arrows of a number field
            const room = input.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight) - spinner;
            const needed = context.measureText(input.value).width;
            if (needed > room) found.push(`a text field holding "${input.value}" is ${room.toFixed(0)} px wide `
                                          + `inside, its text ${needed.toFixed(0)} px`);
        }
        for (const element of document.querySelectorAll('.jp-OutputArea-output .widget-readout, '
                                                        + '.jp-OutputArea-output .widget-label')) {
            if (element.offsetWidth > 0 && element.scrollWidth > element.clientWidth + 1)
                found.push(`"${element.textContent}" is cut: ${element.scrollWidth} px of text in ${element.clientWidth} px`);
        }
        return found;
    }""")


def shows_progress(cell) -> bool:
    """True when the cell's output holds a progress bar: a widget, or tqdm's text bar (TEXT_PROGRESS)."""
    text = "\n".join(cell.locator(".jp-OutputArea-output").all_inner_texts())
    return cell.locator(PROGRESS).count() > 0 or TEXT_PROGRESS.search(text) is not None


def long_cells_without_progress(page, timings: dict[int, float]) -> list[str]:
    """The cells that ran longer than LONG_CELL_S and show no progress bar in their output."""
    cells = page.locator(".jp-Notebook .jp-Cell")
    return [f"cell {index} ran {seconds:.0f} s with no progress bar in its output"
            for index, seconds in sorted(timings.items())
            if seconds > LONG_CELL_S and not shows_progress(cells.nth(index))]


def unreadable_errors() -> dict[str, list[str]]:
    """Each of UNREADABLE_PROMPTS -> the errors the tokenizers raise for it (the word-level one's, the byte-pair one's)."""
    import warnings

    from minidiff.nets.bpe import emoji_tokenizer
    from minidiff.nets.text import tokenize_batch

    errors: dict[str, list[str]] = {}
    for prompt in UNREADABLE_PROMPTS:
        errors[prompt] = []
        for tokenize in (lambda p: tokenize_batch([p]), lambda p: emoji_tokenizer().encode(p)):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # the byte-pair tokenizer warns about each character it drops
                    tokenize(prompt)
            except ValueError as error:
                errors[prompt].append(str(error))
    return errors


def check_prompt_error(page, box, error_timeout_s: float) -> list[str]:
    """In a prompt box's output: press its button on the prompt it holds, then on each of UNREADABLE_PROMPTS in
    turn until one is answered with its error; the error must appear whole in its message area (class
    minidiff-message), and the picture before it must be gone, replaced or marked stale (class minidiff-stale)."""
    text_field, button = box.locator(".widget-text input[type=text]").first, box.locator("button.jupyter-button").first
    button.click()
    wait_until_done(page, timeout_s=error_timeout_s)
    for prompt, expected in unreadable_errors().items():
        pictures = box.locator("img")
        before = pictures.last.screenshot() if pictures.count() else None
        text_field.fill(prompt)
        button.click()
        wait_until_done(page, timeout_s=error_timeout_s)
        page.wait_for_timeout(500)
        messages = box.locator(".minidiff-message")
        if messages.count() == 0:
            return [f"the box with the prompt field answers {prompt!r} with no message area"]
        shown = messages.first.inner_text()
        if not any(error in shown.replace("\n", "") for error in expected):
            continue  # this model reads the prompt: try the next one
        problems = []
        cut = messages.first.evaluate("element => [element.scrollWidth > element.clientWidth + 1, "
                                      "element.scrollHeight > element.clientHeight + 1]")
        if any(cut):
            problems.append(f"the message area cuts its text: {shown!r}")
        stale = box.locator("img.minidiff-stale, .minidiff-stale img").count() > 0
        if before is not None and pictures.count() and not stale and not png_differs(before, pictures.last.screenshot()):
            problems.append(f"after the error for {prompt!r} the previous picture still shows, unmarked")
        return problems
    return [f"the error for none of {list(UNREADABLE_PROMPTS)} is shown whole: the message area says {shown!r}"]
