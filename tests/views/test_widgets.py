"""Widgets: sliders span the steps, moving them redraws, book mode embeds every frame and nothing remote. (The plots:
test_plots.py.)"""

import io

import ipywidgets
import numpy as np
import pytest
import torch
from IPython.display import HTML
from PIL import Image
from support.widgets import decode, embedded_frames, find, small_images

from minidiff.diffusion.schedule import make_schedule
from minidiff.views import controls, plots, widgets


def test_forward_widget_slider_spans_every_t_and_redraws(live_widgets):
    schedule = make_schedule("cosine", 40)
    view = widgets.forward_process_widget(schedule, images=small_images())
    (slider,) = find(view, ipywidgets.SelectionSlider)
    (play,) = find(view, ipywidgets.Play)
    (image,) = find(view, ipywidgets.Image)
    (label,) = find(view, ipywidgets.Label)
    assert list(slider.options) == [(str(t), t) for t in range(schedule.T)]  # the slider reads t itself
    assert slider.value == 0
    assert (play.min, play.max) == (0, schedule.T - 1)
    first = image.value
    assert decode(first).size > 0
    slider.value = schedule.T - 1
    assert image.value != first, "moving the slider must redraw the picture"
    assert f"{schedule.alpha_bar[-1].item():.4g}" in label.value
    slider.value = 0
    assert image.value == first, "going back to t = 0 must show the same picture again"


def test_step_scrubber_has_one_slider_position_per_step(live_widgets):
    generator = torch.Generator().manual_seed(0)
    batches = [torch.rand(3, 1, 8, 8, generator=generator) * 2 - 1 for _ in range(5)]
    view = widgets.step_scrubber(batches, labels=[f"t = {t}" for t in (40, 30, 20, 10, 0)])
    (slider,) = find(view, ipywidgets.SelectionSlider)
    (image,) = find(view, ipywidgets.Image)
    assert [label for label, _ in slider.options] == ["1 of 5", "2 of 5", "3 of 5", "4 of 5", "5 of 5"]
    first = image.value
    slider.value = 3
    assert image.value != first


def test_scrubber_wants_one_label_per_step(live_widgets):
    with pytest.raises(ValueError, match="one label per step"):
        widgets.scrubber(lambda i: plots.image_grid(torch.zeros(1, 1, 4, 4)), 3, labels=["only one"])
    with pytest.raises(ValueError, match="1 values for 3 steps"):
        widgets.scrubber(lambda i: plots.image_grid(torch.zeros(1, 1, 4, 4)), 3, values=[0.5])
    with pytest.raises(ValueError, match="start must be a position 0 ... 2, got 3"):
        widgets.scrubber(lambda i: plots.image_grid(torch.zeros(1, 1, 4, 4)), 3, start=3)


def grey_frames(drawn: list):
    """draw(i) for a scrubber: a grey square of brightness i, remembering each i it was asked to draw."""
    def draw(i: int):
        drawn.append(i)
        return plots.image_grid(torch.full((1, 1, 4, 4), i / 10 - 1), size=1.0)
    return draw


def test_scrubber_reads_the_values_given_and_opens_where_asked(live_widgets):
    drawn = []
    view = widgets.scrubber(grey_frames(drawn), 4, description="w", values=[0, 1.5, 3, 7.5], start=3)
    (slider,) = find(view, ipywidgets.SelectionSlider)
    (play,) = find(view, ipywidgets.Play)
    assert [label for label, _ in slider.options] == ["0", "1.5", "3", "7.5"]
    assert (slider.value, slider.label, play.value) == (3, "7.5", 3)
    assert drawn == [3], "the first picture shown is the one at start"
    assert find(view, ipywidgets.Label) == [], "no label beside the slider unless labels are given"


def test_pictures_are_shown_at_their_own_pixel_size(live_widgets):
    view = widgets.scrubber(grey_frames([]), 3)
    (image,) = find(view, ipywidgets.Image)
    width, height = decode(image.value).shape[1], decode(image.value).shape[0]
    assert (image.layout.width, image.layout.height) == (f"{width}px", f"{height}px")
    assert image.layout.max_width == "none", "JupyterLab must not shrink or stretch it to the cell's width"


def test_a_new_frame_fades_the_old_one_and_says_what_is_drawn_until_it_is_there(live_widgets):
    seen = []
    view = None

    def draw(i: int):
        (image,) = find(view, ipywidgets.Image)
        (message,) = [w for w in find(view, ipywidgets.HTML) if controls.MESSAGE in w._dom_classes]
        seen.append((i, controls.STALE in image._dom_classes, message.value))
        return plots.image_grid(torch.full((1, 1, 4, 4), i / 10 - 1), size=1.0)

    view = widgets.scrubber(lambda i: draw(i) if view is not None else grey_frames([])(i), 3, description="step")
    (slider,) = find(view, ipywidgets.SelectionSlider)
    (image,) = find(view, ipywidgets.Image)
    slider.value = 2
    assert seen[0][:2] == (2, True) and "drawing step 3 of 3" in seen[0][2]
    assert controls.STALE not in image._dom_classes and seen[-1][0] == 2
    slider.value = 0  # drawn already (at the start): no busy sign needed
    slider.value = 2
    assert len(seen) == 1, "frames seen before come from the cache"


def test_a_failed_frame_leaves_the_old_picture_faded(live_widgets):
    def draw(i: int):
        if i == 1:
            raise RuntimeError("cannot draw")
        return plots.image_grid(torch.zeros(1, 1, 4, 4))

    view = widgets.scrubber(draw, 2)
    (slider,) = find(view, ipywidgets.SelectionSlider)
    (image,) = find(view, ipywidgets.Image)
    with pytest.raises(RuntimeError, match="cannot draw"):
        slider.value = 1
    assert controls.STALE in image._dom_classes, "a picture that no longer matches the slider must look stale"
    (message,) = [w for w in find(view, ipywidgets.HTML) if controls.MESSAGE in w._dom_classes]
    assert "cannot draw" in message.value, "the error is said where the learner looks"


def test_schedule_widget_redraws_when_a_dropdown_changes(live_widgets):
    view = widgets.schedule_widget(Ts=(25, 50), images={"digit": small_images()["digits"][:1]})
    schedule_menu, length_menu = find(view, ipywidgets.Dropdown)
    (image,) = find(view, ipywidgets.Image)
    assert list(schedule_menu.options) == list(widgets.SCHEDULE_CHOICES)
    assert list(length_menu.options) == [25, 50]
    first = image.value
    schedule_menu.value = "cosine"
    after_schedule = image.value
    length_menu.value = 50
    assert len({first, after_schedule, image.value}) == 3


def test_book_mode_embeds_every_frame_and_nothing_remote(book_widgets):
    schedule = make_schedule("cosine", 5)
    view = widgets.forward_process_widget(schedule, images=small_images())
    assert isinstance(view, HTML)
    frames = embedded_frames(view.data)
    assert len(frames) == schedule.T  # fewer steps than BOOK_FRAMES: every step is a frame
    assert not np.array_equal(decode(frames[0]), decode(frames[-1]))
    assert "http" not in view.data, "the static player must not load scripts or fonts from the web"
    assert "<link" not in view.data


def test_book_mode_spreads_a_long_slider_over_a_fixed_number_of_frames(book_widgets):
    drawn = []

    def draw(i: int):
        drawn.append(i)
        return plots.image_grid(torch.full((1, 1, 4, 4), i / 100 - 1))

    view = widgets.scrubber(draw, 101, book_frames=6)
    assert drawn == [0, 20, 40, 60, 80, 100]
    assert len(embedded_frames(view.data)) == 6


def test_book_mode_chooser_holds_every_combination(book_widgets):
    view = widgets.schedule_widget(Ts=(25, 50), images={"digit": small_images()["digits"][:1]})
    assert len(embedded_frames(view.data)) == len(widgets.SCHEDULE_CHOICES) * 2


def test_html_player_shows_each_frame_pixel_for_pixel():
    generator = np.random.default_rng(0)
    pictures = [generator.integers(0, 256, size=(30, 40, 3), dtype=np.uint8) for _ in range(3)]
    pngs = []
    for picture in pictures:
        buffer = io.BytesIO()
        Image.fromarray(picture).save(buffer, format="png")
        pngs.append(buffer.getvalue())
    embedded = embedded_frames(widgets.html_player(pngs).data)
    assert len(embedded) == 3
    for picture, png in zip(pictures, embedded):
        np.testing.assert_array_equal(decode(png), picture)
