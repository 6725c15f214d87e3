r"""What the chapters show of a denoiser at work: its training curve and the reverse process, step by step.

- Chapter 04 (training): `loss_figure` (the loss per step and its running mean), `training_frame` (the loss so
  far beside the samples drawn at that point of training), `loss_per_t_figure` (the loss in bands of t).
- Chapter 05 (sampling): `denoising_frame` and `denoising_widget` scrub through a sampler's recorded steps
  (`minidiff.diffusion.loop.DenoisingStep`, collected through the sampling loop's callback): x_t, the predicted x0 and
  the predicted eps of a batch, with a timeline of t. `step_variances` and `variances_figure` compare the two
  variances of the reverse step.

Papers followed: Ho, Jain & Abbeel 2020 (DDPM), Algorithm 2 (ancestral sampling), eq. 15 (x0 from eps) and
sec. 3.2 (the step variance Sigma_t = beta_t or beta_tilde_t); Nichol & Dhariwal 2021, sec. 4 (the betas of a shorter
sub-sequence of steps).

As in `minidiff.views.plots`, figures are made without pyplot, so a widget can draw many frames without leaking them.
"""

from collections.abc import Sequence

import ipywidgets
import numpy as np
import torch
from IPython.display import HTML
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from minidiff.diffusion.loop import DenoisingStep
from minidiff.diffusion.schedule import NoiseSchedule, posterior_coefficients
from minidiff.views import plots, widgets

EPS_DISPLAY_SCALE = 3.0  # eps is N(0, 1): divided by 3 it fits [-1, 1] (pictures clip outside), so its grain shows
ROWS = {  # DenoisingStep field -> row label
    "x_t": "x_t",
    "x0": "predicted x0",
    "eps": f"predicted eps\n(divided by {EPS_DISPLAY_SCALE:g})",
}


def running_mean(values: Sequence[float], window: int) -> np.ndarray:
    """The mean of the last `window` values at each position (fewer at the start): a smoothed loss curve."""
    values = np.asarray(values, dtype=np.float64)
    totals = np.cumsum(np.concatenate([[0.0], values]))  # totals[i] = values[0] + ... + values[i - 1]
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    return (totals[ends] - totals[starts]) / (ends - starts)


def plot_losses(ax: Axes, losses: Sequence[float], window: int = 20, steps: int | None = None) -> None:
    """Draw the loss of every step (faint) and its running mean over `window` steps, on a log y-axis.

    steps: the x-axis is fixed to 0 ... steps, so a curve that grows frame by frame does not rescale.
    """
    x = np.arange(1, len(losses) + 1)
    ax.plot(x, losses, color="tab:blue", alpha=0.3, linewidth=0.8, label="loss of each step")
    ax.plot(x, running_mean(losses, window), color="tab:blue", linewidth=2, label=f"mean of the last {window}")
    ax.set_yscale("log")
    if steps is not None:
        ax.set_xlim(0, steps)
    ax.set_xlabel("training step", fontsize=8)
    ax.set_ylabel("loss", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper right")


def loss_figure(curves: dict[str, Sequence[float]], window: int = 20, size: float = 3.2) -> Figure:
    """One panel per loss curve (title -> the loss of each step), sharing the y-axis."""
    fig = Figure(figsize=(1.6 * size * len(curves), size), layout="constrained")
    axes = fig.subplots(1, len(curves), squeeze=False, sharey=True)[0]
    for ax, (title, losses) in zip(axes, curves.items()):
        plot_losses(ax, losses, window)
        ax.set_title(title, fontsize=9)
    return fig


def training_frame(losses: Sequence[float], step: int, samples: torch.Tensor, total_steps: int,
                   window: int = 20) -> Figure:
    """Chapter 04's frame: the loss up to `step` (of total_steps) on the left, samples drawn at `step` on the right.

    losses: the loss of every step of the whole run (the axes span all of it). samples: (N, C, H, W) images drawn
    with the weights of that step, always from the same noise.
    """
    fig = Figure(figsize=(9.0, 3.0))
    grid = fig.add_gridspec(1, 2, width_ratios=(1.2, 1), left=0.1, right=0.98, bottom=0.16, top=0.88, wspace=0.15)
    ax = fig.add_subplot(grid[0, 0])
    plot_losses(ax, losses[:step], window, steps=total_steps)
    ax.set_ylim(min(losses) * 0.8, max(losses) * 1.25)  # the whole run's range: every frame has the same axes
    columns = int(np.ceil(len(samples) / 2))
    plots.show_image(fig.add_subplot(grid[0, 1]), plots.tile(samples, ncols=columns), title=f"samples at step {step}")
    fig.suptitle(f"training step {step} of {total_steps}", fontsize=10)
    return fig


def loss_per_t_figure(curves: dict[str, torch.Tensor], T: int, size: float = 3.2) -> Figure:
    """The loss in equal bands of t, one line per model (name -> loss per band), on a log y-axis."""
    fig = Figure(figsize=(2 * size, size), layout="constrained")
    ax = fig.subplots()
    for name, losses in curves.items():
        edges = np.linspace(0, T, len(losses) + 1)
        centres = (edges[:-1] + edges[1:]) / 2
        ax.plot(centres, torch.as_tensor(losses).numpy(), "o-", label=name)
    ax.set_yscale("log")
    ax.set_xlabel("t (0 = almost clean, T - 1 = pure noise)", fontsize=8)
    ax.set_ylabel("mean squared error of eps", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return fig


def plot_timeline(ax: Axes, schedule: NoiseSchedule, timesteps: Sequence[int], t: int) -> None:
    """t runs from T - 1 (left, where sampling starts) to 0 (right): how much image and noise x_t holds at each t,
    a tick at every step the sampler visits, and a dot at the current t."""
    every_t = np.arange(schedule.T)
    signal = schedule.alpha_bar.sqrt().numpy()
    noise = (1 - schedule.alpha_bar).sqrt().numpy()
    ax.plot(every_t, signal, color="tab:blue", label=r"$\sqrt{\bar\alpha_t}$ (image in $x_t$)")
    ax.plot(every_t, noise, color="tab:orange", label=r"$\sqrt{1 - \bar\alpha_t}$ (noise in $x_t$)")
    ax.plot(timesteps, np.full(len(timesteps), -0.08), "|", color="grey", markersize=6)
    ax.plot([t, t], [signal[t], noise[t]], "o", color="black", markersize=5)
    ax.axvline(t, color="black", linewidth=1)
    ax.set_xlim(schedule.T - 1, 0)  # time flows left to right, as the sampler goes
    ax.set_ylim(-0.15, 1.05)
    ax.set_xlabel(f"t   (ticks: the {len(timesteps)} steps the sampler visits)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="center left")


def denoising_frame(step: DenoisingStep, schedule: NoiseSchedule, timesteps: Sequence[int],
                    labels: Sequence[str] | None = None) -> Figure:
    """Chapter 05's frame: x_t, predicted x0 and predicted eps of the batch at one step, and the timeline of t.

    The predicted eps is drawn divided by EPS_DISPLAY_SCALE, so that its values, spread like N(0, 1), are not
    clipped to black and white.

    labels: one per image (e.g. the class each was asked for), under the bottom row. Fixed layout (no layout
    engine), so that a frame is quick to draw.
    """
    fig = Figure(figsize=(9.0, 5.0))
    grid = fig.add_gridspec(4, 1, height_ratios=(1, 1, 1, 1.6), left=0.15, right=0.98, bottom=0.09, top=0.92,
                            hspace=0.4)
    for row, (field, row_label) in enumerate(ROWS.items()):
        ax = fig.add_subplot(grid[row, 0])
        images = getattr(step, field).float().cpu()
        if field == "eps":
            images = images / EPS_DISPLAY_SCALE
        plots.show_row(ax, images, labels=list(labels) if labels is not None and row == len(ROWS) - 1 else None)
        ax.set_ylabel(row_label, fontsize=9, rotation=0, ha="right", va="center")
    plot_timeline(fig.add_subplot(grid[3, 0]), schedule, timesteps, step.t)
    alpha_bar = float(schedule.alpha_bar[step.t])
    fig.suptitle(f"step {step.index + 1} of {len(timesteps)}:  t = {step.t},  " + r"$\sqrt{\bar\alpha_t}$"
                 + f" = {alpha_bar ** 0.5:.3f}", fontsize=10)
    return fig


def denoising_widget(trajectory: Sequence[DenoisingStep], schedule: NoiseSchedule,
                     labels: Sequence[str] | None = None) -> ipywidgets.VBox | HTML:
    """A Play button and a slider over recorded sampling steps, each showing `denoising_frame`.

    The live widget carries the CSS class "minidiff-main": it is the chapter's main widget (the one the browser
    test operates). In book mode (MINIDIFF_BOOK=1) it is a static player, like every `minidiff.views.widgets` scrubber.
    """
    if not trajectory:
        raise ValueError("no steps to show: pass the trajectory, the DenoisingStep list that the sampler's callback "
                         "collected")
    timesteps = [step.t for step in trajectory]

    def draw(i: int) -> Figure:
        return denoising_frame(trajectory[i], schedule, timesteps, labels)

    slider_labels = [f"t = {step.t}" for step in trajectory]
    view = widgets.scrubber(draw, len(trajectory), labels=slider_labels, description="step")
    if isinstance(view, ipywidgets.VBox):
        view.add_class("minidiff-main")
    return view


def step_variances(schedule: NoiseSchedule, timesteps: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    r"""The two variances of each reverse step a sampler takes along `timesteps` (downwards, as sampled).

    For the step from t to t_prev (the next timestep, or the clean image after the last):
    $\beta = 1 - \bar\alpha_t / \bar\alpha_{t_\text{prev}}$ and $\tilde\beta = \frac{1 - \bar\alpha_{t_\text{prev}}}
    {1 - \bar\alpha_t}\beta$ (Ho et al. 2020, eq. 7; Nichol & Dhariwal 2021, sec. 4 for skipped steps).
    Returns (beta, beta_tilde), one value per timestep.
    """
    alpha_bar_t = schedule.alpha_bar[list(timesteps)]
    alpha_bar_prev = torch.cat([schedule.alpha_bar[list(timesteps[1:])],
                                torch.ones(1, dtype=torch.float64)])  # the last step lands on the clean image
    # $\beta = 1 - \bar\alpha_t / \bar\alpha_{t_\text{prev}}$
    beta = 1 - alpha_bar_t / alpha_bar_prev
    _, _, beta_tilde = posterior_coefficients(alpha_bar_t, alpha_bar_prev)  # the posterior's variance, eq. 7
    return beta.numpy(), beta_tilde.numpy()


def variances_figure(schedule: NoiseSchedule, runs: dict[str, Sequence[int]], size: float = 3.2) -> Figure:
    """beta and beta_tilde against t, one panel per sampler run (title -> its timesteps), on a log y-axis;
    and their ratio beta_tilde / beta in a last panel."""
    fig = Figure(figsize=(size * 1.3 * (len(runs) + 1), size), layout="constrained")
    axes = fig.subplots(1, len(runs) + 1, squeeze=False)[0]
    for ax, (title, timesteps) in zip(axes, runs.items()):
        beta, beta_tilde = step_variances(schedule, timesteps)
        ax.plot(timesteps, beta, color="tab:red", label=r"$\beta$")
        ax.plot(timesteps[:-1], beta_tilde[:-1], color="tab:green", label=r"$\tilde\beta$")  # 0 at the last step
        ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(r"variance $\Sigma_t$ of the step", fontsize=8)
        axes[-1].plot(timesteps[:-1], (beta_tilde / beta)[:-1], label=title)
    for ax in axes:
        ax.set_xlabel("t", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    axes[-1].set_title(r"ratio $\tilde\beta / \beta$", fontsize=9)
    axes[-1].set_ylim(0, 1.05)
    return fig
