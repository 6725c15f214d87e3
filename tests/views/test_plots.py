"""The chapters' matplotlib figures: one axes and one image per picture, every curve where its numbers say."""

import numpy as np
import pytest
import torch
from support.widgets import small_images

from minidiff.diffusion.schedule import make_schedule
from minidiff.views import plots


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
