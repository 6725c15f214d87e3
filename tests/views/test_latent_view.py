"""Chapter 09's latent step view: frames show the latents and the decoded prediction of each step; the widget scrubs."""

import ipywidgets
import numpy as np
import pytest
import torch
from IPython.display import HTML
from support.tiny import TINY_AUTOENCODER, tiny_conditioned_unet
from support.widgets import decode, embedded_frames, find

from minidiff.diffusion.schedule import make_schedule
from minidiff.nets.autoencoder import Autoencoder
from minidiff.nets.conditioning import attribute_tokens
from minidiff.pipeline import sample_shapes
from minidiff.views import latent_view

SCALE_FACTOR = 0.8
PROMPTS = [{"colour": "red", "shape": "circle", "size": "small", "position": "top left"},
           {"colour": "blue", "shape": "square", "size": "large", "position": "center"},
           {"colour": "green", "shape": "triangle", "size": "small", "position": "bottom right"}]


@pytest.fixture(scope="module")
def recorded():
    """The DecodedSteps of a real (untrained, tiny) latent run: 5 DPM-Solver++ steps, T = 50, 3 prompts."""
    model = tiny_conditioned_unet()  # seeds torch with 0: the autoencoder's weights follow from the same stream
    autoencoder = Autoencoder(TINY_AUTOENCODER).eval()
    schedule = make_schedule("cosine", 50)
    trajectory = []
    images = sample_shapes(model, schedule, "v", autoencoder, SCALE_FACTOR, attribute_tokens(PROMPTS), "dpm++",
                           steps=5, generator=torch.Generator().manual_seed(0), callback=trajectory.append)
    return schedule, trajectory, images, autoencoder


def test_latent_picture_shows_three_channels_scaled_and_clipped():
    z = torch.tensor([-5.0, -1.0, 0.0, 1.0, 5.0]).reshape(1, 1, 1, 5).repeat(1, 4, 1, 1)  # (1, 4, 1, 5)
    z[:, 3] = 100.0  # the channel left out
    picture = latent_view.latent_picture(z, scale=2.0)
    assert picture.shape == (1, 3, 1, 5)
    np.testing.assert_allclose(picture[0, 0, 0].numpy(), [-1.0, -0.5, 0.0, 0.5, 1.0])
    other = latent_view.latent_picture(z, channels=(3, 2, 1), scale=2.0)
    np.testing.assert_allclose(other[0, 0].numpy(), 1.0)  # channel 3 (100 / 2, clipped) is now red


def test_latent_picture_wants_three_existing_channels():
    with pytest.raises(ValueError, match="3 colour channels"):
        latent_view.latent_picture(torch.zeros(1, 4, 8, 8), channels=(0, 1))
    with pytest.raises(ValueError, match="4 channels"):
        latent_view.latent_picture(torch.zeros(1, 4, 8, 8), channels=(0, 1, 4))


def test_frame_shows_z_t_predicted_latent_decoded_image_and_timeline(recorded):
    schedule, trajectory, _, _ = recorded
    step = trajectory[2]
    fig = latent_view.latent_denoising_frame(step, schedule, [decoded.latent.t for decoded in trajectory], labels=["a", "b", "c"])
    assert len(fig.axes) == 4
    shown = [np.asarray(ax.images[0].get_array()) for ax in fig.axes[:3]]
    # each row is the batch side by side, 2 pixels apart: the first image sits top left, the second 2 pixels on
    for row, (picture, expected) in enumerate(zip(shown, (step.latent.x_t, step.latent.x0))):
        for i in range(2):
            size = expected.shape[-1]
            cell = picture[:size, i * (size + 2):i * (size + 2) + size]  # (h, w, 3) uint8
            reference = ((expected[i, :3] / latent_view.LATENT_DISPLAY_SCALE).clamp(-1, 1) + 1) * 127.5
            np.testing.assert_array_equal(cell, reference.round().permute(1, 2, 0).to(torch.uint8).numpy(),
                                          err_msg=f"row {row}, image {i}")
    assert shown[2].shape[:2] == (32, 3 * 34 - 2)  # three decoded 32 x 32 images
    assert [tick.get_text() for tick in fig.axes[2].get_xticklabels()] == ["a", "b", "c"]
    assert fig.axes[3].get_xlim() == (schedule.T - 1, 0)  # the timeline: sampling runs left to right
    assert f"t = {step.latent.t}" in fig._suptitle.get_text()


def test_the_decoded_row_is_the_decoder_applied_to_the_predicted_latent(recorded):
    _, trajectory, images, autoencoder = recorded
    step = trajectory[1]
    with torch.no_grad():
        expected = autoencoder.decode(step.latent.x0 / SCALE_FACTOR).clamp(-1, 1)
    torch.testing.assert_close(step.x0_image, expected)
    torch.testing.assert_close(trajectory[-1].x0_image, images)  # the last step's prediction is the sample


def test_widget_scrubs_every_recorded_step(live_widgets, recorded):
    schedule, trajectory, _, _ = recorded
    view = latent_view.latent_denoising_widget(trajectory, schedule, labels=["a", "b", "c"])
    assert "minidiff-main" in view._dom_classes  # the chapter's main widget, for the browser test
    (slider,) = find(view, ipywidgets.SelectionSlider)
    (image,) = find(view, ipywidgets.Image)
    (label,) = find(view, ipywidgets.Label)
    n = len(trajectory)
    assert list(slider.options) == [(f"{i + 1} of {n}", i) for i in range(n)]  # steps counted as titles count them
    first = image.value
    slider.value = len(trajectory) - 1
    assert image.value != first
    assert label.value == f"t = {trajectory[-1].latent.t}"


def test_widget_is_a_static_player_in_book_mode(book_widgets, recorded):
    schedule, trajectory, _, _ = recorded
    view = latent_view.latent_denoising_widget(trajectory, schedule)
    assert isinstance(view, HTML)
    frames = embedded_frames(view.data)
    assert len(frames) == len(trajectory)  # fewer steps than BOOK_FRAMES: each one is a frame
    assert not np.array_equal(decode(frames[0]), decode(frames[-1]))


def test_widget_needs_a_trajectory():
    with pytest.raises(ValueError, match="no steps"):
        latent_view.latent_denoising_widget([], make_schedule("cosine", 50))
