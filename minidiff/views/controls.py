"""The parts the chapters' live widgets are built from: a picture at its own size, a message area, a busy sign,
and a progress bar for long work.

- `picture` / `show_png`: an `ipywidgets.Image` whose layout is set to the PNG's own pixel size every time its
  picture changes. Left alone, JupyterLab's flex boxes stretch an image to the width of the cell, and the browser
  then resamples it (blurred, 1.24x here, 1.74x there) and pictures of different sizes make the page jump.
- `message_area` / `say`: an HTML line of its own that wraps: an error is shown whole, never cut at the edge.
- `busy`: while a picture is being redrawn, it is faded (CSS class "minidiff-stale") and the message says what
  is being drawn; if drawing fails, it stays faded, so a stale picture never passes for the new one, and the message
  says the error.
- `fit_figures_to_column`: the notebook shows every matplotlib figure at most COLUMN_PX wide, drawn at a lower
  resolution when it is wider, so JupyterLab never shrinks (and blurs) it to fit its output column.
- `progress`: tqdm.auto's progress bar (a widget in JupyterLab, text in a terminal) for every cell that runs
  longer than about 10 seconds; switched off in the static book, where a widget could not be drawn.
"""

import html
import io
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import ipywidgets
from IPython import get_ipython
from matplotlib.figure import Figure
from PIL import Image
from tqdm.auto import tqdm

BOOK_ENV = "MINIDIFF_BOOK"  # set to 1 to get static HTML players instead of live widgets
STALE = "minidiff-stale"  # CSS class of a picture that no longer shows what the controls ask for
MESSAGE = "minidiff-message"  # CSS class of a message area (the browser test reads it)
PICTURE = "minidiff-picture"  # CSS class of a picture shown at its own size
STYLE = f"<style>.{STALE} {{ opacity: 0.35; transition: opacity 0.2s; }}</style>"
COLOURS = {"info": "inherit", "busy": "#555555", "error": "#b00020"}
COLUMN_PX = 820  # JupyterLab's output column is about 848 px in a 1280-px window with its file browser open
INLINE_DPI = 100  # what the inline backend draws a figure at, when it fits


def book_mode() -> bool:
    """True when building the static HTML book (MINIDIFF_BOOK=1): widgets become self-contained HTML players."""
    return os.environ.get(BOOK_ENV, "0") == "1"


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) of a PNG in pixels."""
    with Image.open(io.BytesIO(png)) as image:
        return image.size


def show_png(image: ipywidgets.Image, png: bytes) -> None:
    """Show png in image at its own pixel size: neither stretched to the cell nor shrunk, so never resampled."""
    width, height = png_size(png)
    image.layout.width, image.layout.height = f"{width}px", f"{height}px"
    image.value = png


def picture(png: bytes | None = None) -> ipywidgets.Image:
    """An image widget that keeps each PNG at its own size (see `show_png`); empty until given a PNG."""
    image = ipywidgets.Image(format="png", layout=ipywidgets.Layout(max_width="none", flex="0 0 auto"))
    image.add_class(PICTURE)
    if png is not None:
        show_png(image, png)
    return image


def style() -> ipywidgets.HTML:
    """The CSS the parts need (the faded stale picture), as an invisible widget to put in the view's box."""
    return ipywidgets.HTML(STYLE, layout=ipywidgets.Layout(display="none"))


def message_area() -> ipywidgets.HTML:
    """An empty message line, as wide as the cell; long messages wrap onto more lines."""
    area = ipywidgets.HTML(layout=ipywidgets.Layout(width="100%"))
    area.add_class(MESSAGE)
    return area


def say(area: ipywidgets.HTML, text: str, kind: str = "info") -> None:
    """Show text (kind "info", "busy" or "error") in the message area, whole: it wraps rather than being cut."""
    if kind not in COLOURS:
        raise ValueError(f"kind must be one of {sorted(COLOURS)}, not {kind!r}")
    area.value = (f'<div style="white-space: pre-wrap; overflow-wrap: anywhere; line-height: 1.4; '
                  f'color: {COLOURS[kind]}">{html.escape(text)}</div>') if text else ""


@contextmanager
def busy(image: ipywidgets.Widget, area: ipywidgets.HTML, doing: str) -> Iterator[None]:
    """Fade image and say `doing` while the block runs; unfade and clear the message if it ends without error.
    If it raises, the picture stays faded, the message area says the error whole, and the error goes on up."""
    image.add_class(STALE)
    say(area, doing, "busy")
    try:
        yield
    except Exception as error:
        say(area, f"no new picture: {type(error).__name__}: {error}", "error")
        raise
    image.remove_class(STALE)
    say(area, "")


def fitted_png(fig: Figure, max_width_px: int = COLUMN_PX) -> bytes:
    """The figure as PNG (tight bounding box, as the inline backend draws it) at INLINE_DPI, or at the lower
    resolution that makes it at most max_width_px wide."""
    dpi = INLINE_DPI
    for _ in range(3):  # the tight box is known once drawn: measure, and draw again smaller if too wide
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
        width = png_size(buffer.getvalue())[0]
        if width <= max_width_px:
            break
        dpi *= 0.99 * max_width_px / width
    return buffer.getvalue()


def fit_figures_to_column(max_width_px: int = COLUMN_PX) -> None:
    """From now on, show every matplotlib Figure in this notebook as `fitted_png` draws it (call it after
    `%matplotlib inline`). Outside IPython it does nothing."""
    shell = get_ipython()
    if shell is not None:
        shell.display_formatter.formatters["image/png"].for_type(Figure, lambda fig: fitted_png(fig, max_width_px))


def progress(iterable: Iterable | None = None, description: str = "", total: int | None = None) -> tqdm:
    """A progress bar over iterable, or one to `update()` by hand when iterable is None (give total then):
    tqdm.auto's, a widget in JupyterLab and text in a terminal. In the static book it is switched off (it shows
    nothing and passes the items through), since the book cannot draw a widget."""
    return tqdm(iterable, desc=description, total=total, disable=book_mode())
