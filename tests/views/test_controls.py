"""The parts of the live widgets: a picture at its own size, a message area that shows a message whole, progress."""

import io

import pytest
from matplotlib.figure import Figure
from PIL import Image
from tqdm.auto import tqdm

from minidiff.views import controls


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "white").save(buffer, format="png")
    return buffer.getvalue()


def test_a_picture_takes_the_size_of_each_png_it_is_given():
    image = controls.picture(png(30, 20))
    assert (image.layout.width, image.layout.height, image.layout.max_width) == ("30px", "20px", "none")
    controls.show_png(image, png(7, 9))
    assert (image.layout.width, image.layout.height) == ("7px", "9px")
    assert controls.PICTURE in image._dom_classes


def test_a_message_is_shown_whole_escaped_and_wrapping():
    area = controls.message_area()
    long_error = "the prompt has words the model does not know: 'balloon'; " + "it knows only: " + ", ".join(
        f"word{i}" for i in range(60)) + " <b>"
    controls.say(area, long_error, "error")
    assert "word59" in area.value and "&lt;b&gt;" in area.value  # all of it, as text, not as HTML
    assert "white-space: pre-wrap" in area.value and controls.COLOURS["error"] in area.value
    controls.say(area, "")
    assert area.value == ""
    with pytest.raises(ValueError, match="kind must be one of"):
        controls.say(area, "x", "warning")


def test_busy_marks_the_picture_until_the_work_is_done():
    image, area = controls.picture(png(4, 4)), controls.message_area()
    with controls.busy(image, area, "drawing 50 steps ..."):
        assert controls.STALE in image._dom_classes and "drawing 50 steps" in area.value
    assert controls.STALE not in image._dom_classes and area.value == ""
    with pytest.raises(RuntimeError), controls.busy(image, area, "drawing ..."):
        raise RuntimeError("out of memory")
    assert controls.STALE in image._dom_classes and "RuntimeError: out of memory" in area.value


def test_progress_is_a_bar_for_a_learner_and_nothing_in_the_book(monkeypatch):
    monkeypatch.delenv(controls.BOOK_ENV, raising=False)
    bar = controls.progress(range(3), "strengths")
    assert isinstance(bar, tqdm) and list(bar) == [0, 1, 2] and bar.desc == "strengths"
    by_hand = controls.progress(description="cells", total=4)
    by_hand.update()
    assert (by_hand.n, by_hand.total) == (1, 4)
    monkeypatch.setenv(controls.BOOK_ENV, "1")
    off = controls.progress(range(3), "strengths")
    assert off.disable and list(off) == [0, 1, 2]


def test_a_wide_figure_is_drawn_to_fit_the_column_and_a_narrow_one_as_it_is():
    wide, narrow = Figure(figsize=(12.0, 3.0)), Figure(figsize=(4.0, 3.0))
    for fig in (wide, narrow):
        fig.subplots().plot([0, 1], [1, 0])
    wide.suptitle("a title that reaches far " * 3)
    width, height = png_size_of(controls.fitted_png(wide))  # 1,200 px at 100 dpi: drawn smaller
    assert controls.COLUMN_PX - 20 <= width <= controls.COLUMN_PX and height < 3.0 * 100
    narrow_png = controls.fitted_png(narrow)  # fits: drawn at 100 dpi, less the margins the tight box trims
    assert 300 < png_size_of(narrow_png)[0] <= 4.0 * controls.INLINE_DPI


def test_figures_keep_their_formatter_outside_ipython():
    controls.fit_figures_to_column()  # no IPython shell here: nothing to change, nothing raised


def png_size_of(png: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(png)).size
