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
from minidiff.views import plots, widgets


def test_forward_widget_slider_spans_every_t_and_redraws(live_widgets):
    schedule = make_schedule("cosine", 40)
    view = widgets.forward_process_widget(schedule, images=small_images())
    (slider,) = find(view, ipywidgets.IntSlider)
    (play,) = find(view, ipywidgets.Play)
    (image,) = find(view, ipywidgets.Image)
    (label,) = find(view, ipywidgets.Label)
    assert (slider.min, slider.max, slider.value) == (0, schedule.T - 1, 0)
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
    (slider,) = find(view, ipywidgets.IntSlider)
    (image,) = find(view, ipywidgets.Image)
    assert (slider.min, slider.max) == (0, len(batches) - 1)
    first = image.value
    slider.value = 3
    assert image.value != first


def test_scrubber_wants_one_label_per_step(live_widgets):
    with pytest.raises(ValueError, match="one label per step"):
        widgets.scrubber(lambda i: plots.image_grid(torch.zeros(1, 1, 4, 4)), 3, labels=["only one"])


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
