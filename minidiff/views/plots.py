"""Pictures for the chapters: image grids, schedule curves, pixel histograms, and the widgets' frames.

Every function either draws on an `Axes` you pass in (`show_image`, `show_row`, `plot_schedule`,
`plot_pixel_histogram`) or returns a new `matplotlib.figure.Figure`. Figures are made without pyplot, so
nothing is kept in pyplot's global list: a widget can draw hundreds of frames without leaking them, and a
notebook shows a figure by leaving it as the last expression of a cell (after `%matplotlib inline`).

Images are tensors (N, C, H, W) or (C, H, W) with values in [-1, 1], as the model sees them
(`minidiff.data.pixels.to_model`); values outside [-1, 1] are clipped for display only. C is 1 (grey) or 3 (RGB).

The schedule curves follow the quantities of Ho et al. 2020 (alpha_bar, eq. 4) and Kingma et al. 2021,
"Variational Diffusion Models" (SNR and log-SNR, sec. 3).
"""

import math

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from minidiff.data.pixels import from_model
from minidiff.diffusion.forward import q_sample
from minidiff.diffusion.schedule import NoiseSchedule

QUANTITY_LABELS = {  # NoiseSchedule attribute -> axis label
    "betas": r"$\beta_t$",
    "alpha_bar": r"$\bar\alpha_t$",
    "snr": r"SNR $\bar\alpha_t / (1 - \bar\alpha_t)$",
    "log_snr": r"log-SNR $\lambda_t$",
}
LOG_SCALE = ("betas", "snr")  # quantities spanning several orders of magnitude


def to_picture(image: torch.Tensor) -> np.ndarray:
    """One image (C, H, W) in [-1, 1] -> a uint8 array for imshow: (H, W, 3) for colour, (H, W) for grey."""
    picture = from_model(image[None])[0]  # (C, H, W) -> (H, W, C)
    return picture[..., 0] if picture.shape[-1] == 1 else picture


def show_image(ax: Axes, image: torch.Tensor, title: str | None = None) -> None:
    """Draw one image (C, H, W) on ax, pixel for pixel, without ticks."""
    ax.imshow(to_picture(image), cmap="gray", vmin=0, vmax=255, interpolation="nearest")  # cmap: grey images only
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=8)


def tile(images: torch.Tensor, ncols: int | None = None, pad: int = 2, pad_value: float = 0.0) -> torch.Tensor:
    """Lay a batch out as one image, row by row: (N, C, H, W) -> (C, rows * (H + pad) - pad, ncols * (W + pad) - pad).

    The gaps are filled with pad_value (0.0 is mid-grey), which stands out on black digits and white shapes alike.
    """
    n, channels, height, width = images.shape
    ncols = n if ncols is None else ncols
    nrows = math.ceil(n / ncols)
    canvas = torch.full((channels, nrows * (height + pad) - pad, ncols * (width + pad) - pad), pad_value)
    for index, image in enumerate(images):
        row, col = divmod(index, ncols)
        top, left = row * (height + pad), col * (width + pad)
        canvas[:, top:top + height, left:left + width] = image
    return canvas


def show_row(ax: Axes, images: torch.Tensor, labels: list[str] | None = None, pad: int = 2) -> None:
    """Draw a batch (N, C, H, W) side by side on one Axes (one imshow, so it is fast), a label under each image."""
    show_image(ax, tile(images, pad=pad))
    if labels is not None:
        width = images.shape[-1]
        centres = [index * (width + pad) + (width - 1) / 2 for index in range(len(images))]
        ax.set_xticks(centres, labels, fontsize=7)
        ax.tick_params(length=0)


def image_grid(images: torch.Tensor | list[torch.Tensor], ncols: int | None = None, titles: list[str] | None = None,
               row_labels: list[str] | None = None, suptitle: str | None = None, size: float = 1.2) -> Figure:
    """A figure with one Axes per image, ncols to a row: datasets, samples, denoising trajectories.

    images: a tensor (N, C, H, W) or a list of N tensors (C, H, W), which may differ in size and channels.
    titles: one per image, above it. row_labels: one per row, left of the row's first image.
    size: inches per image. The figure holds exactly N Axes (unused cells of the last row are removed).
    """
    images = list(images)
    ncols = min(len(images), 8) if ncols is None else ncols
    nrows = math.ceil(len(images) / ncols)
    fig = Figure(figsize=(size * ncols, size * nrows + (0.3 if suptitle else 0.0)), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for index, ax in enumerate(axes.flat):
        if index >= len(images):
            ax.remove()
            continue
        show_image(ax, images[index], None if titles is None else titles[index])
    for row, label in enumerate(row_labels or []):
        axes[row, 0].set_ylabel(label, fontsize=8)
    if suptitle is not None:
        fig.suptitle(suptitle, fontsize=10)
    return fig


def plot_schedule(ax: Axes, schedule: NoiseSchedule, quantity: str = "alpha_bar", t: int | None = None,
                  label: str | None = None, fraction: bool = True, **line_style) -> None:
    """Draw one quantity of a schedule against the fraction of the process done, (t + 1) / T, and mark step t.

    Using (t + 1) / T on the x-axis lets schedules with different T share one plot: for the cosine and sigmoid
    schedules, alpha_bar[t] is exactly the continuous alpha_bar at (t + 1) / T. With fraction=False the x-axis is t.
    """
    values = getattr(schedule, quantity).numpy().copy()
    values[~np.isfinite(values)] = np.nan  # log-SNR is -inf where SNR is 0 (zero terminal SNR): left out
    if quantity in LOG_SCALE:
        values[values <= 0] = np.nan  # and SNR = 0 has no place on a log axis
    timesteps = np.arange(schedule.T)
    x = (timesteps + 1) / schedule.T if fraction else timesteps
    (line,) = ax.plot(x, values, label=label, **line_style)
    if t is not None:
        ax.plot(x[t], values[t], "o", color=line.get_color(), markersize=6)
    if quantity in LOG_SCALE:
        ax.set_yscale("log")
    ax.set_xlabel("(t + 1) / T" if fraction else "t", fontsize=8)
    ax.set_ylabel(QUANTITY_LABELS.get(quantity, quantity), fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)


def schedule_figure(schedules: dict[str, NoiseSchedule], quantities: tuple[str, ...] = ("alpha_bar", "snr", "log_snr"),
                    size: float = 3.2) -> Figure:
    """One Axes per quantity, one line per schedule (the dict's keys are the legend)."""
    fig = Figure(figsize=(size * len(quantities), size * 0.8), layout="constrained")
    axes = fig.subplots(1, len(quantities), squeeze=False)[0]
    for ax, quantity in zip(axes, quantities):
        for name, schedule in schedules.items():
            plot_schedule(ax, schedule, quantity, label=name)
    axes[0].legend(fontsize=7)
    return fig


def steps_per_log_snr(schedules: dict[str, NoiseSchedule], bin_width: float = 1.0, limit: float = 12.0,
                      size: float = 3.2) -> Figure:
    """Where the T steps go: for each schedule, the fraction of its steps whose log-SNR falls in each band.

    A schedule that spends many steps at very negative log-SNR is denoising near-pure noise there.
    Schedules are compared as fractions of T, so different T can share the plot.
    """
    edges = np.arange(-limit, limit + bin_width, bin_width)
    fig = Figure(figsize=(size * 2, size * 0.9), layout="constrained")
    ax = fig.subplots()
    for name, schedule in schedules.items():
        log_snr = schedule.log_snr.clamp(-limit, limit).numpy()  # -inf (SNR 0) lands in the lowest band
        counts, _ = np.histogram(log_snr, bins=edges)
        ax.stairs(counts / schedule.T, edges, label=name, linewidth=2)
    ax.set_xlabel(r"log-SNR $\lambda_t$  (image hidden $\leftarrow$ $\rightarrow$ image clear)", fontsize=8)
    ax.set_ylabel(f"fraction of steps per band of {bin_width:g}", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return fig


def scatter_figure(panels: dict[str, tuple[torch.Tensor, torch.Tensor]], xlabel: str, ylabel: str,
                   size: float = 3.2) -> Figure:
    """One scatter plot per panel (title -> (x, y)), with its least-squares line and slope in the legend."""
    fig = Figure(figsize=(size * len(panels), size * 0.9), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    for ax, (title, (x, y)) in zip(axes, panels.items()):
        x, y = x.double().numpy(), y.double().numpy()
        slope, intercept = np.polyfit(x, y, deg=1)
        ax.scatter(x, y, s=4, alpha=0.5)
        line_x = np.array([x.min(), x.max()])
        ax.plot(line_x, slope * line_x + intercept, "k-", linewidth=1.5, label=f"slope {slope:.4f}")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    axes[0].set_ylabel(ylabel, fontsize=8)
    return fig


def plot_pixel_histogram(ax: Axes, x: torch.Tensor, mean: float = 0.0, std: float = 1.0, bins: int = 81,
                         limit: float = 4.0) -> None:
    """Histogram of every value in x (as a density) against the normal density N(mean, std^2), by default N(0, 1)."""
    counts, edges = np.histogram(x.flatten().numpy(), bins=bins, range=(-limit, limit), density=True)
    ax.stairs(counts, edges, fill=True, alpha=0.5, label="values")
    grid = np.linspace(-limit, limit, 400)
    # $\mathcal{N}(z; \mu, \sigma^2) = e^{-(z - \mu)^2 / 2\sigma^2} / (\sigma\sqrt{2\pi})$
    density = np.exp(-((grid - mean) ** 2) / (2 * std**2)) / (std * math.sqrt(2 * math.pi))
    ax.plot(grid, density, "k--", linewidth=1, label=f"N({mean:.2g}, {std:.2g}²)")
    ax.set_xlim(-limit, limit)
    ax.set_xlabel("value", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="upper right")


def pixel_histograms(panels: dict[str, torch.Tensor], mean: float = 0.0, std: float = 1.0, size: float = 2.8) -> Figure:
    """One histogram per panel (title -> tensor of values), each against N(mean, std^2), on a shared y-axis."""
    fig = Figure(figsize=(size * len(panels), size * 0.8), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    for ax, (title, x) in zip(axes, panels.items()):
        plot_pixel_histogram(ax, x, mean, std)
        ax.set_title(title, fontsize=9)
    return fig


def forward_frame(x_t: dict[str, torch.Tensor], schedule: NoiseSchedule, t: int) -> Figure:
    """Chapter 01's frame: each batch of x_t on top; alpha_bar, SNR (marked at t) and the pixel histogram below.

    x_t maps a name ("photo", "digits", ...) to a batch (N, C, H, W) noised to step t. The layout is fixed
    (no layout engine), which makes a frame about three times faster to draw: the slider stays responsive.
    """
    fig = Figure(figsize=(9.0, 6.0))
    grid = fig.add_gridspec(2, max(len(x_t), 3), height_ratios=(1.3, 1), left=0.07, right=0.98, bottom=0.08,
                            top=0.92, wspace=0.35, hspace=0.2)
    for column, (name, batch) in enumerate(x_t.items()):
        show_image(fig.add_subplot(grid[0, column]), tile(batch, ncols=math.ceil(math.sqrt(len(batch)))), title=name)
    ax_alpha_bar, ax_snr, ax_hist = (fig.add_subplot(grid[1, column]) for column in range(3))
    plot_schedule(ax_alpha_bar, schedule, "alpha_bar", t=t, fraction=False)
    ax_alpha_bar.set_ylim(-0.03, 1.03)
    plot_schedule(ax_snr, schedule, "snr", t=t, fraction=False)
    plot_pixel_histogram(ax_hist, torch.cat([batch.flatten() for batch in x_t.values()]))
    ax_hist.set_ylim(0, 1.0)
    fig.suptitle(f"t = {t} of 0 ... {schedule.T - 1}:   " + r"$\bar\alpha_t$" + f" = {schedule.alpha_bar[t]:.4g},   "
                 + r"$\sqrt{\bar\alpha_t}$" + f" = {schedule.alpha_bar[t].sqrt():.4f}", fontsize=10)
    return fig


def evenly_spaced_steps(T: int, n: int) -> list[int]:
    """n steps from 0 to T - 1, evenly spaced, first and last included (all T of them if T <= n)."""
    return sorted({round(k * (T - 1) / (n - 1)) for k in range(n)}) if n > 1 else [0]


def noising_rows(x0: torch.Tensor, schedules: dict[str, NoiseSchedule], eps: torch.Tensor, n_columns: int = 9,
                 size: float = 1.1) -> Figure:
    """What the model sees: one row per schedule, x_t of the same image with the same noise at evenly spaced t.

    x0 and eps: one image (1, C, H, W) and one noise draw of the same shape, shared by every row and column,
    so the only thing that changes between rows is the schedule.
    """
    fig = Figure(figsize=(size * n_columns + 1.0, size * len(schedules) + 0.3), layout="constrained")
    axes = fig.subplots(len(schedules), 1, squeeze=False)[:, 0]
    for ax, (name, schedule) in zip(axes, schedules.items()):
        timesteps = evenly_spaced_steps(schedule.T, n_columns)
        row = torch.cat([q_sample(schedule, x0, t, eps) for t in timesteps])  # (n_columns, C, H, W)
        show_row(ax, row, labels=[f"t={t}" for t in timesteps])
        ax.set_ylabel(name, fontsize=8, rotation=0, ha="right", va="center")
    return fig


def schedule_frame(schedule: NoiseSchedule, name: str, x0: dict[str, torch.Tensor], eps: dict[str, torch.Tensor],
                   others: dict[str, NoiseSchedule] | None = None, n_columns: int = 10) -> Figure:
    """Chapter 02's frame: alpha_bar and log-SNR of one schedule (others faint), and x_t of each image at several t.

    x0 and eps map a name to one image (1, C, H, W) and its noise; each becomes one row of x_t. Fixed layout,
    like `forward_frame`, so that switching schedules is quick.
    """
    fig = Figure(figsize=(10.0, 3.0 + 1.1 * len(x0)))
    grid = fig.add_gridspec(1 + len(x0), 2, height_ratios=(2.4, *[1.1] * len(x0)), left=0.07, right=0.98,
                            bottom=0.05, top=0.93, wspace=0.2, hspace=0.45)
    for column, quantity in enumerate(("alpha_bar", "log_snr")):
        ax = fig.add_subplot(grid[0, column])
        for other_name, other in (others or {}).items():
            if other_name != name:
                plot_schedule(ax, other, quantity, label=other_name, linewidth=1, alpha=0.4)
        plot_schedule(ax, schedule, quantity, label=name, linewidth=2.5, color="black")
        if column == 0:
            ax.legend(fontsize=7)
    timesteps = evenly_spaced_steps(schedule.T, n_columns)
    for row, image_name in enumerate(x0, start=1):
        ax = fig.add_subplot(grid[row, :])
        x_t = torch.cat([q_sample(schedule, x0[image_name], t, eps[image_name]) for t in timesteps])  # (n, C, H, W)
        show_row(ax, x_t, labels=[f"t={t}" for t in timesteps])
        ax.set_ylabel(image_name, fontsize=8, rotation=0, ha="right", va="center")
    fig.suptitle(f"{name}, T = {schedule.T}", fontsize=11)
    return fig
