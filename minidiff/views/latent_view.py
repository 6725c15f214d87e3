r"""Chapter 09's view of sampling in latent space, step by step: the latents the sampler works on, and the image
the decoder makes of the predicted clean latent at every step.

A sampler in latent space moves an 8 x 8 x 4 latent $z_t$ from noise to a clean $z_0$; only at the end is
$z_0$ decoded, $\tilde x = \mathcal D(z_0 / \zeta)$ with the scale factor $\zeta$ (Rombach et al. 2022, sec. 3;
`minidiff.nets.autoencoder.decode_latents`). But every step also predicts the clean latent, $\hat z_0$, and
decoding that shows what the model is drawing at that moment. `latent_denoising_frame` puts three rows side by
side, with chapter 05's timeline of t below:

- $z_t$, the latent the step starts from;
- $\hat z_0$, the predicted clean latent;
- $\mathcal D(\hat z_0 / \zeta)$, the predicted clean latent decoded: a 32 x 32 image.

A latent has four channels and no colours. `latent_picture` shows three of them as red, green and blue, each
divided by `LATENT_DISPLAY_SCALE`: scaled latents have unit variance, so most values then fall inside the
picture's range [-1, 1] (mid-grey is 0). The fourth channel is not shown; pick others with `channels`.

`latent_denoising_widget` scrubs through the steps that `minidiff.pipeline.sample_shapes` reports
(`DecodedStep`s), with `minidiff.views.widgets.scrubber`: a live slider in JupyterLab, a static player in the book.
As in `minidiff.views.plots`, figures are made without pyplot, so a widget can draw many frames without leaking them.
"""

from collections.abc import Sequence

import ipywidgets
import torch
from IPython.display import HTML
from matplotlib.figure import Figure

from minidiff.diffusion.schedule import NoiseSchedule
from minidiff.pipeline import DecodedStep
from minidiff.views import plots, widgets
from minidiff.views.denoise_view import plot_timeline

LATENT_DISPLAY_SCALE = 2.0  # unit-variance latents divided by 2: about 95% of the values fit the picture's [-1, 1]
RGB_CHANNELS = (0, 1, 2)  # the latent channels shown as red, green and blue
ROW_LABELS = ("latent $z_t$", r"predicted latent $\hat z_0$", "decoded\n" + r"$\mathcal{D}(\hat z_0 / \zeta)$")


def latent_picture(z: torch.Tensor, channels: Sequence[int] = RGB_CHANNELS,
                   scale: float = LATENT_DISPLAY_SCALE) -> torch.Tensor:
    """Latents (B, C, h, w) -> pictures (B, 3, h, w) in [-1, 1]: three channels as red, green, blue, divided by
    scale and clipped (0 is mid-grey)."""
    if len(channels) != 3:
        raise ValueError(f"a picture has 3 colour channels; got channels={tuple(channels)}: name 3 latent channels")
    if max(channels) >= z.shape[1]:
        raise ValueError(f"the latents have {z.shape[1]} channels (0 ... {z.shape[1] - 1}); got {tuple(channels)}")
    return (z[:, list(channels)].float().cpu() / scale).clamp(-1, 1)  # (B, C, h, w) -> (B, 3, h, w)


def latent_denoising_frame(step: DecodedStep, schedule: NoiseSchedule, timesteps: Sequence[float],
                           labels: Sequence[str] | None = None, channels: Sequence[int] = RGB_CHANNELS) -> Figure:
    """One step of latent sampling: z_t, the predicted clean latent, that latent decoded, and the timeline of t.

    timesteps: every t the sampler visits (ticks on the timeline). labels: one per image (e.g. the prompt),
    under the decoded row. Fixed layout (no layout engine), so that a frame is quick to draw.
    """
    rows = (latent_picture(step.latent.x_t, channels), latent_picture(step.latent.x0, channels),
            step.x0_image.float().cpu())
    fig = Figure(figsize=(9.0, 6.4))
    grid = fig.add_gridspec(4, 1, height_ratios=(1, 1, 1.2, 1.3), left=0.17, right=0.98, bottom=0.08, top=0.93,
                            hspace=0.35 if labels is None else 0.6)
    for row, (images, row_label) in enumerate(zip(rows, ROW_LABELS)):
        ax = fig.add_subplot(grid[row, 0])
        plots.show_row(ax, images, labels=list(labels) if labels is not None and row == len(rows) - 1 else None)
        ax.set_ylabel(row_label, fontsize=9, rotation=0, ha="right", va="center")
    plot_timeline(fig.add_subplot(grid[3, 0]), schedule, [int(t) for t in timesteps], int(step.latent.t))
    alpha_bar = float(schedule.alpha_bar[int(step.latent.t)])
    fig.suptitle(f"step {step.latent.index + 1} of {len(timesteps)}:  t = {step.latent.t:g},  "
                 + r"$\sqrt{\bar\alpha_t}$" + f" = {alpha_bar ** 0.5:.3f}   "
                 + f"(latent channels {', '.join(map(str, channels))} as red, green, blue)", fontsize=10)
    return fig


def latent_denoising_widget(trajectory: Sequence[DecodedStep], schedule: NoiseSchedule,
                            labels: Sequence[str] | None = None,
                            channels: Sequence[int] = RGB_CHANNELS) -> ipywidgets.VBox | HTML:
    """A Play button and a slider over the recorded steps of a latent sampler, each shown by
    `latent_denoising_frame`.

    The live widget carries the CSS class "minidiff-main": it is chapter 09's main widget (the one the browser
    test operates). In book mode (MINIDIFF_BOOK=1) it is a static player, like every `minidiff.views.widgets` scrubber.
    """
    if not trajectory:
        raise ValueError("no steps to show: pass the trajectory, the DecodedStep list that sample_shapes' callback "
                         "collected")
    timesteps = [step.latent.t for step in trajectory]

    def draw(i: int) -> Figure:
        return latent_denoising_frame(trajectory[i], schedule, timesteps, labels, channels)

    slider_labels = [f"t = {t:g}" for t in timesteps]
    view = widgets.scrubber(draw, len(trajectory), labels=slider_labels, description="step")
    if isinstance(view, ipywidgets.VBox):
        view.add_class("minidiff-main")
    return view
