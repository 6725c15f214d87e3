r"""The sampler race's figures, for chapter 06: quality against cost, and the same digits along every sampler's path.

`race_figure` draws the results of a race (`minidiff.measure.race`, which runs it): Fréchet distance and class
accuracy against NFE and against seconds per image, one line per sampler through its step counts, beside the
real-vs-real baseline. `paths_frame` draws what `minidiff.measure.race.sampler_paths` recorded: one sampler's x_t
and predicted x0 along its path, next to every sampler's final digits from the same x_T. Its columns are the steps
where the signal share of x_t, sqrt(alpha_bar_t), has climbed evenly from start to end (`telling_steps`), so each
column shows the digit clearer than the last.

Papers: Karras et al. 2022, sec. 3, for NFE as the honest measure of a sampler's cost; Heusel et al. 2017, eq. 6,
for the Fréchet distance.
"""

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter

from minidiff.diffusion.loop import DenoisingStep
from minidiff.diffusion.schedule import NoiseSchedule, alpha_bar_at
from minidiff.measure.race import ordered_cells
from minidiff.views import plots


def race_figure(results: dict, title: str | None = None, size: float = 3.2, seconds: str = "seconds") -> Figure:
    """Quality against cost: Fréchet distance (top) and class accuracy (bottom), against NFE (left) and against
    seconds per image (right), one line per sampler through its step counts; log-scaled x-axes.

    seconds: "seconds" plots wall-clock time (right for a GPU, or an otherwise idle CPU); "cpu_seconds" plots the
    CPU time of the race's own process, which other jobs on a shared machine do not inflate.
    """
    if seconds not in ("seconds", "cpu_seconds"):
        raise ValueError(f"seconds must be 'seconds' (wall clock) or 'cpu_seconds', not {seconds!r}")
    n = results["settings"]["n"]
    fig = Figure(figsize=(2 * size * 1.25, 2 * size * 0.85), layout="constrained")
    axes = fig.subplots(2, 2, sharex="col", sharey="row")
    cells = ordered_cells(results)
    for sampler in dict.fromkeys(cell["sampler"] for cell in cells):
        mine = [cell for cell in cells if cell["sampler"] == sampler]
        costs = ([c["nfe"] for c in mine], [c[seconds] / n for c in mine])  # per image: NFE, then seconds
        for column, x in enumerate(costs):
            for row, quality in enumerate(("frechet_distance", "class_accuracy")):
                axes[row, column].plot(x, [c[quality] for c in mine], "o-", markersize=4, label=sampler)
            for cell, x_cell in zip(mine, x):  # the step count beside each point of the top row
                axes[0, column].annotate(str(cell["steps"]), (x_cell, cell["frechet_distance"]), fontsize=6,
                                         xytext=(3, 3), textcoords="offset points")
    for ax in axes[0]:
        ax.axhline(results["real_vs_real_frechet_distance"], color="grey", linestyle="--", linewidth=1,
                   label="real vs real")
        ax.set_yscale("log")
    axes[0, 0].set_ylabel("Fréchet distance (lower is better)", fontsize=8)
    axes[1, 0].set_ylabel("class accuracy", fontsize=8)
    axes[1, 0].set_xlabel("NFE (network evaluations per image)", fontsize=8)
    axes[1, 1].set_xlabel(f"{'wall-clock' if seconds == 'seconds' else 'CPU'} seconds per image", fontsize=8)
    for ax in axes.flat:
        ax.set_xscale("log")
        for axis in (ax.xaxis, ax.yaxis) if ax in axes[0] else (ax.xaxis,):
            axis.set_major_formatter(LogFormatter())  # plain numbers (20, 0.05), not 2 x 10^1
            axis.set_minor_formatter(LogFormatter())  # labels some minor ticks when the range is short
        ax.grid(alpha=0.3, which="both")
        ax.tick_params(labelsize=7, which="both")
    axes[0, 1].legend(fontsize=7)
    settings = results["settings"]
    device = settings.get("device_name", settings.get("device", "cpu"))
    fig.suptitle(title or f"sampler race on {device}: n = {settings['n']} digits per cell, seed {settings['seed']}",
                 fontsize=10)
    return fig


def snapshot_grid(path: list[DenoisingStep], field: str, picked: list[int]) -> torch.Tensor:
    """One image of a batch's `field` ("x_t" or "x0") at the picked steps: a row per digit, a column per step."""
    snapshots = torch.stack([getattr(path[i], field) for i in picked], dim=1)  # S x (B, C, H, W) -> (B, S, C, H, W)
    images = snapshots.flatten(0, 1).float().cpu().clamp(-1, 1)  # (B, S, C, H, W) -> (B * S, C, H, W)
    return plots.tile(images, ncols=len(picked))


def label_columns(ax, labels: list[str], width: int = 28, pad: int = 2) -> None:
    """Name the columns of a tiled image (columns `width` pixels wide, `pad` apart) below it."""
    ax.set_xticks([index * (width + pad) + (width - 1) / 2 for index in range(len(labels))], labels, fontsize=7)
    ax.tick_params(length=0)


def signal_share(schedule: NoiseSchedule, t: float) -> float:
    r"""How much of x_t is the image: $\sqrt{\bar\alpha_t}$ (Ho et al. 2020, eq. 4), 0 for pure noise, 1 for clean."""
    return alpha_bar_at(schedule, t) ** 0.5


def telling_steps(path: list[DenoisingStep], schedule: NoiseSchedule, n_columns: int) -> list[int]:
    """Every step of a path of at most n_columns steps; of a longer one, the steps (indices, first and last
    included) where the signal share of x_t is nearest to n_columns values evenly spaced from the first step's to
    the last's.

    Steps evenly spaced in their index would not do: a sampler on Karras sigmas spends its first steps near
    t = 999, where x_t is pure noise (Euler, 50 steps: t = 999, 999, 998, 997, 982, 660, 0), so most columns
    would show the same noise under the same label."""
    if len(path) <= n_columns:
        return list(range(len(path)))
    shares = np.array([signal_share(schedule, step.t) for step in path])
    targets = np.linspace(shares[0], shares[-1], n_columns)
    return sorted({int(np.abs(shares - target).argmin()) for target in targets})


def paths_frame(paths: dict[str, list[DenoisingStep]], chosen: str, schedule: NoiseSchedule,
                n_columns: int = 7) -> Figure:
    """Chapter 06's frame. Left: the chosen sampler's x_t and predicted x0 at up to n_columns steps of its path
    (`telling_steps` of the schedule), a row per digit. Right: every sampler's final digits from the same seed, a
    column per sampler, with its NFE."""
    path = paths[chosen]
    picked = telling_steps(path, schedule, n_columns)
    fig = Figure(figsize=(9.0, 5.6))
    grid = fig.add_gridspec(2, 2, width_ratios=(n_columns, len(paths) + 1), left=0.03, right=0.99, bottom=0.06,
                            top=0.88, wspace=0.08, hspace=0.36)
    for row, (field, title) in enumerate((("x_t", "$x_t$"), ("x0", r"predicted $\hat x_0$"))):
        ax = fig.add_subplot(grid[row, 0])
        plots.show_image(ax, snapshot_grid(path, field, picked))
        label_columns(ax, [f"t={path[i].t:.0f}\n" + r"$\sqrt{\bar\alpha}$" + f"={signal_share(schedule, path[i].t):.2f}"
                           for i in picked])
        ax.set_title(f"{chosen}: {title} along the way", fontsize=9)
    ax = fig.add_subplot(grid[:, 1])
    finals = torch.stack([sampler_path[-1].x_prev for sampler_path in paths.values()], dim=1)  # (B, samplers, C, H, W)
    plots.show_image(ax, plots.tile(finals.flatten(0, 1).float().cpu().clamp(-1, 1), ncols=len(paths)))
    label_columns(ax, [f"{name}\n{sampler_path[-1].nfe} NFE" for name, sampler_path in paths.items()])
    for label, name in zip(ax.get_xticklabels(), paths):
        if name == chosen:
            label.set_fontweight("bold")
            label.set_color("tab:red")
    ax.set_title("final digits, same seed", fontsize=9)
    fig.suptitle(f"{chosen}, {len(path)} steps: {path[-1].nfe} network evaluations per image", fontsize=11)
    return fig
