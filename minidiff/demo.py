"""`python -m minidiff demo` (what `make demo` runs): the forward process, drawn.

For each schedule it writes one picture to outputs/: a real photo, a few MNIST digits and a few
Shapes images, each shown at several steps t on their way to pure noise. Later chapters replace this
with the text-to-image demo once that model ships.
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # the demo only writes files; never needs a screen
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from minidiff.data import from_model, mnist5k, photo, shapes, to_model  # noqa: E402
from minidiff.forward import q_sample  # noqa: E402
from minidiff.schedule import make_schedule  # noqa: E402

SCHEDULES = {  # title -> (name, zero_terminal_snr)
    "linear": ("linear", False),
    "cosine": ("cosine", False),
    "sigmoid": ("sigmoid", False),
    "linear_zero_terminal_snr": ("linear", True),
}


def demo_images(n_digits: int = 3, n_shapes: int = 3) -> list[torch.Tensor]:
    """The pictures that go to noise: the photo, a few digits, a few shapes, each as (1, C, H, W) in [-1, 1]."""
    digits, labels = mnist5k()
    first_of_each = [int(np.flatnonzero(labels == k)[0]) for k in range(n_digits)]
    shape_images, _, _ = shapes(n_shapes, split="train", seed=0)
    images = [to_model(photo(64)[None])]
    images += [to_model(digits[i][None]) for i in first_of_each]
    images += [to_model(shape_images[i][None]) for i in range(n_shapes)]
    return images


def forward_figure(title: str, images: list[torch.Tensor], steps: list[int], schedule, seed: int = 0):
    """A grid: one row per image, one column per step t, each cell x_t drawn from q(x_t | x0)."""
    fig, axes = plt.subplots(len(images), len(steps), figsize=(1.3 * len(steps), 1.3 * len(images)))
    generator = torch.Generator().manual_seed(seed)
    for row, x0 in enumerate(images):
        eps = torch.randn(x0.shape, generator=generator)  # one noise draw per image, reused across t
        for col, t in enumerate(steps):
            x_t = q_sample(schedule, x0, t, eps)
            picture = from_model(x_t)[0]  # (H, W, C)
            ax = axes[row, col]
            if picture.shape[-1] == 1:
                ax.imshow(picture[..., 0], cmap="gray", vmin=0, vmax=255)
            else:
                ax.imshow(picture)
            ax.set_xticks([]), ax.set_yticks([])
            if row == 0:
                ax.set_title(f"t={t}\n" + r"$\bar\alpha$" + f"={schedule.alpha_bar[t]:.3f}", fontsize=7)
    fig.suptitle(f"forward process, {title} schedule (T={schedule.T})", fontsize=9)
    fig.tight_layout()
    return fig


def run(args: argparse.Namespace) -> list[Path]:
    """Write one forward-process picture per schedule to args.out and print each path."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images = demo_images()
    steps = [0, 50, 100, 200, 300, 500, 700, 999]
    paths = []
    for title, (name, zero_terminal_snr) in SCHEDULES.items():
        schedule = make_schedule(name, 1000, zero_terminal_snr=zero_terminal_snr)
        fig = forward_figure(title, images, steps, schedule, seed=args.seed)
        path = out / f"forward_{title}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
        print(f"wrote {path}")
    return paths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the demo's options on its sub-command parser."""
    parser.add_argument("--out", default="outputs", help="folder for the pictures (default: outputs)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise (default: 0)")
    parser.set_defaults(run=run)
