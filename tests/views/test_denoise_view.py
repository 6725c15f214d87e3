"""The reverse-process views: recorded sampler steps scrub in a widget, variances agree with the sampler's step."""

import ipywidgets
import numpy as np
import pytest
import torch
from IPython.display import HTML
from support.tiny import tiny_unet
from support.widgets import decode, embedded_frames, find

from minidiff.diffusion.loop import model_denoiser
from minidiff.diffusion.samplers import sample_ddpm
from minidiff.diffusion.schedule import make_schedule
from minidiff.diffusion.steps import ddpm_step
from minidiff.diffusion.timesteps import sampling_timesteps
from minidiff.views import denoise_view


@pytest.fixture(scope="module")
def recorded():
    """The DenoisingSteps of a real (untrained, tiny) DDPM run: 6 steps of a T = 30 schedule, 3 images."""
    model = tiny_unet(num_classes=10)
    schedule = make_schedule("cosine", 30)
    trajectory = []
    sample_ddpm(model_denoiser(model, class_labels=torch.tensor([0, 1, 2])), (3, 1, 28, 28), schedule, steps=6,
                generator=torch.Generator().manual_seed(0), callback=trajectory.append)
    return schedule, trajectory


def test_running_mean_matches_a_loop_over_windows():
    values = np.random.default_rng(0).normal(size=37)
    for window in (1, 5, 50):
        expected = [values[max(0, i + 1 - window):i + 1].mean() for i in range(len(values))]
        np.testing.assert_allclose(denoise_view.running_mean(values, window), expected)


def test_step_variances_of_all_steps_are_the_schedules_own():
    schedule = make_schedule("linear", 100)
    beta, beta_tilde = denoise_view.step_variances(schedule, sampling_timesteps(100))
    np.testing.assert_allclose(beta, schedule.betas.flip(0).numpy(), rtol=1e-10)
    np.testing.assert_allclose(beta_tilde, schedule.posterior_variance.flip(0).numpy(), rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("variance", ["beta", "beta_tilde"])
def test_step_variances_are_the_noise_the_sampler_adds_on_skipped_steps(variance):
    schedule = make_schedule("cosine", 1000)
    timesteps = sampling_timesteps(1000, 7)
    beta, beta_tilde = denoise_view.step_variances(schedule, timesteps)
    shown = beta if variance == "beta" else beta_tilde
    zeros, ones = torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    for i, t in enumerate(timesteps[:-1]):  # the last step adds no noise
        alpha_bar, alpha_bar_prev = schedule.alpha_bar[t].item(), schedule.alpha_bar[timesteps[i + 1]].item()
        # with x_t = x0 = 0 the step returns exactly sigma * noise
        sigma = ddpm_step(zeros, zeros, alpha_bar, alpha_bar_prev, noise=ones, variance=variance).item()
        assert shown[i] == pytest.approx(sigma**2, rel=1e-9)
    assert beta_tilde[-1] == 0.0 and 0 < beta[-1] < 1e-3  # into the clean image: nothing left to be unsure about


def test_denoising_widget_scrubs_every_recorded_step(live_widgets, recorded):
    schedule, trajectory = recorded
    view = denoise_view.denoising_widget(trajectory, schedule, labels=["a", "b", "c"])
    assert "minidiff-main" in view._dom_classes  # the chapter's main widget, for the browser test
    (slider,) = find(view, ipywidgets.SelectionSlider)
    find(view, ipywidgets.Play)
    (image,) = find(view, ipywidgets.Image)
    (label,) = find(view, ipywidgets.Label)
    n = len(trajectory)
    assert list(slider.options) == [(f"{i + 1} of {n}", i) for i in range(n)]  # steps counted as titles count them
    first = image.value
    slider.value = len(trajectory) - 1
    assert image.value != first
    assert label.value == f"t = {trajectory[-1].t}"


def test_denoising_widget_is_a_static_player_in_book_mode(book_widgets, recorded):
    schedule, trajectory = recorded
    view = denoise_view.denoising_widget(trajectory, schedule)
    assert isinstance(view, HTML)
    frames = embedded_frames(view.data)
    assert len(frames) == len(trajectory)  # fewer steps than BOOK_FRAMES: each one is a frame
    assert not np.array_equal(decode(frames[0]), decode(frames[-1]))


def test_denoising_widget_needs_a_trajectory():
    with pytest.raises(ValueError, match="no steps"):
        denoise_view.denoising_widget([], make_schedule("cosine", 30))


def test_denoising_frame_shows_three_rows_and_a_timeline(recorded):
    schedule, trajectory = recorded
    fig = denoise_view.denoising_frame(trajectory[2], schedule, [step.t for step in trajectory])
    assert len(fig.axes) == 4
    timeline = fig.axes[3]
    assert timeline.get_xlim() == (schedule.T - 1, 0)  # sampling runs left to right
    assert f"t = {trajectory[2].t}" in fig._suptitle.get_text()


def test_training_frame_keeps_its_axes_fixed_as_the_curve_grows():
    losses = list(np.linspace(1.0, 0.1, 40))
    samples = torch.zeros(10, 1, 28, 28)
    early = denoise_view.training_frame(losses, 5, samples, total_steps=40)
    late = denoise_view.training_frame(losses, 40, samples, total_steps=40)
    assert early.axes[0].get_xlim() == late.axes[0].get_xlim() == (0, 40)
    assert early.axes[0].get_ylim() == late.axes[0].get_ylim()
    low, high = early.axes[0].get_ylim()
    assert low < 0.1 and high > 1.0  # the whole run fits
    assert len(early.axes[0].lines[0].get_xdata()) == 5


def test_loss_figures_draw_one_curve_per_model():
    fig = denoise_view.loss_figure({"a": [1.0, 0.5, 0.2], "b": [0.9, 0.8]})
    assert len(fig.axes) == 2
    fig = denoise_view.loss_per_t_figure({"a": torch.tensor([0.5, 0.1]), "b": torch.tensor([0.4, 0.05])}, T=1000)
    assert len(fig.axes[0].lines) == 2
    np.testing.assert_allclose(fig.axes[0].lines[0].get_xdata(), [250, 750])  # band centres
