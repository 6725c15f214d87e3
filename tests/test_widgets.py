"""Widgets and plots: sliders span the steps, moving them redraws, book mode embeds every frame and nothing remote."""

import base64
import io
import re

import ipywidgets
import numpy as np
import pytest
import torch
from IPython.display import HTML
from PIL import Image

from minidiff.diffusion.schedule import make_schedule
from minidiff.views import plots, widgets


def find(widget: ipywidgets.Widget, kind: type) -> list:
    """Every widget of the given type inside a widget tree, depth first."""
    found = [widget] if isinstance(widget, kind) else []
    for child in getattr(widget, "children", ()):
        found += find(child, kind)
    return found


def small_images() -> dict[str, torch.Tensor]:
    return widgets.forward_examples(n_digits=2, n_shapes=2, photo_size=16)


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def embedded_frames(html: str) -> list[bytes]:
    """The PNG frames of a jshtml player; their base64 text is split over lines ending in a backslash."""
    found = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=\\\n]+)", html)
    return [base64.b64decode(data.replace("\\\n", "")) for data in found]


@pytest.fixture
def live(monkeypatch):
    monkeypatch.delenv(widgets.BOOK_ENV, raising=False)


@pytest.fixture
def book(monkeypatch):
    monkeypatch.setenv(widgets.BOOK_ENV, "1")


def test_forward_widget_slider_spans_every_t_and_redraws(live):
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


def test_step_scrubber_has_one_slider_position_per_step(live):
    generator = torch.Generator().manual_seed(0)
    steps = [torch.rand(3, 1, 8, 8, generator=generator) * 2 - 1 for _ in range(5)]
    view = widgets.step_scrubber(steps, labels=[f"t = {t}" for t in (40, 30, 20, 10, 0)])
    (slider,) = find(view, ipywidgets.IntSlider)
    (image,) = find(view, ipywidgets.Image)
    assert (slider.min, slider.max) == (0, len(steps) - 1)
    first = image.value
    slider.value = 3
    assert image.value != first


def test_scrubber_wants_one_label_per_step(live):
    with pytest.raises(ValueError, match="one label per step"):
        widgets.scrubber(lambda i: plots.image_grid(torch.zeros(1, 1, 4, 4)), 3, labels=["only one"])


def test_schedule_widget_redraws_when_a_dropdown_changes(live):
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


def test_book_mode_embeds_every_frame_and_nothing_remote(book):
    schedule = make_schedule("cosine", 5)
    view = widgets.forward_process_widget(schedule, images=small_images())
    assert isinstance(view, HTML)
    frames = embedded_frames(view.data)
    assert len(frames) == schedule.T  # fewer steps than BOOK_FRAMES: every step is a frame
    assert not np.array_equal(decode(frames[0]), decode(frames[-1]))
    assert "http" not in view.data, "the static player must not load scripts or fonts from the web"
    assert "<link" not in view.data


def test_book_mode_spreads_a_long_slider_over_a_fixed_number_of_frames(book):
    drawn = []

    def draw(i: int):
        drawn.append(i)
        return plots.image_grid(torch.full((1, 1, 4, 4), i / 100 - 1))

    view = widgets.scrubber(draw, 101, book_frames=6)
    assert drawn == [0, 20, 40, 60, 80, 100]
    assert len(embedded_frames(view.data)) == 6


def test_book_mode_chooser_holds_every_combination(book):
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


def test_tile_places_each_image_in_its_cell():
    images = torch.rand(5, 3, 4, 6) * 2 - 1
    canvas = plots.tile(images, ncols=3, pad=2, pad_value=0.5)
    assert canvas.shape == (3, 2 * 4 + 2, 3 * 6 + 2 * 2)
    for index, image in enumerate(images):
        row, col = divmod(index, 3)
        assert torch.equal(canvas[:, row * 6:row * 6 + 4, col * 8:col * 8 + 6], image)
    assert bool((canvas[:, 6:, 16:] == 0.5).all()), "the unused last cell is padding"


def test_image_grid_has_one_axes_and_one_image_per_picture():
    pictures = [torch.zeros(1, 28, 28), torch.zeros(3, 32, 32), torch.zeros(3, 64, 64)] * 2 + [torch.zeros(1, 8, 8)]
    fig = plots.image_grid(pictures, ncols=3, titles=[str(i) for i in range(7)], row_labels=["a", "b", "c"])
    assert len(fig.axes) == 7
    assert all(len(ax.images) == 1 for ax in fig.axes)
    assert [ax.get_title() for ax in fig.axes] == [str(i) for i in range(7)]
    assert fig.axes[0].images[0].get_array().shape == (28, 28)  # grey stays one channel
    assert fig.axes[1].images[0].get_array().shape == (32, 32, 3)


def test_forward_frame_draws_each_batch_and_three_plots():
    schedule = make_schedule("linear", 100)
    x_t = small_images()
    fig = plots.forward_frame(x_t, schedule, t=50)
    assert len(fig.axes) == len(x_t) + 3
    assert sum(len(ax.images) for ax in fig.axes) == len(x_t)


def test_schedule_figure_draws_one_line_per_schedule_per_quantity():
    schedules = {name: make_schedule(name, 50) for name in ("linear", "cosine", "sigmoid")}
    fig = plots.schedule_figure(schedules, quantities=("alpha_bar", "snr", "log_snr"))
    assert len(fig.axes) == 3
    assert all(len(ax.lines) == 3 for ax in fig.axes)
    x, y = fig.axes[0].lines[1].get_data()
    np.testing.assert_allclose(x, np.arange(1, 51) / 50)
    np.testing.assert_allclose(y, schedules["cosine"].alpha_bar.numpy())


def test_noising_rows_has_one_row_per_schedule_and_one_label_per_column():
    schedules = {"linear": make_schedule("linear", 1000), "cosine": make_schedule("cosine", 25)}
    x0 = small_images()["digits"][:1]
    fig = plots.noising_rows(x0, schedules, torch.randn(x0.shape), n_columns=6)
    assert len(fig.axes) == 2
    assert [tick.get_text() for tick in fig.axes[0].get_xticklabels()][-1] == "t=999"
    assert [tick.get_text() for tick in fig.axes[1].get_xticklabels()] == [f"t={t}" for t in (0, 5, 10, 14, 19, 24)]


def test_pixel_histograms_are_densities_that_match_their_samples():
    generator = torch.Generator().manual_seed(0)
    panels = {"first draw": torch.randn(50_000, generator=generator),
              "second draw": torch.randn(50_000, generator=generator)}
    fig = plots.pixel_histograms(panels)
    assert len(fig.axes) == 2
    for ax in fig.axes:
        (bars,) = ax.patches
        density, edges, _ = bars.get_data()
        centres = (edges[:-1] + edges[1:]) / 2
        assert np.sum(density * np.diff(edges)) == pytest.approx(1.0)
        normal = np.exp(-centres**2 / 2) / np.sqrt(2 * np.pi)
        assert np.abs(density - normal).max() < 0.03
        assert len(ax.lines) == 1  # the N(0, 1) curve


def test_pixel_histogram_curve_follows_mean_and_std():
    fig = plots.pixel_histograms({"shifted": torch.zeros(10)}, mean=1.0, std=0.5)
    x, y = fig.axes[0].lines[0].get_data()
    assert x[np.argmax(y)] == pytest.approx(1.0, abs=0.02)
    assert y.max() == pytest.approx(1 / (0.5 * np.sqrt(2 * np.pi)), rel=1e-3)


def test_steps_per_log_snr_counts_every_step_once():
    schedules = {"cosine": make_schedule("cosine", 200),
                 "zero terminal SNR": make_schedule("linear", 50, zero_terminal_snr=True)}
    fig = plots.steps_per_log_snr(schedules, bin_width=2.0)
    (ax,) = fig.axes
    assert len(ax.patches) == 2
    for bars, schedule in zip(ax.patches, schedules.values()):
        fractions, edges, _ = bars.get_data()
        assert fractions.sum() == pytest.approx(1.0)  # the -inf of zero terminal SNR lands in the lowest band
        in_first_band = (schedule.log_snr < edges[1]).double().mean().item()
        assert fractions[0] == pytest.approx(in_first_band)


def test_scatter_figure_fits_the_least_squares_line():
    x = torch.linspace(-1, 1, 50)
    fig = plots.scatter_figure({"exact": (x, 3 * x + 1), "flat": (x, torch.zeros(50))}, xlabel="x", ylabel="y")
    assert len(fig.axes) == 2
    assert fig.axes[0].get_legend().get_texts()[0].get_text() == "slope 3.0000"
    assert fig.axes[1].get_legend().get_texts()[0].get_text() in ("slope 0.0000", "slope -0.0000")
