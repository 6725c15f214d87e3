"""`python -m minidiff demo` (what `make demo` runs): text to image with the shipped model, then the forward process.

1. For a handful of prompts, two of them colour/shape pairs the model never saw in training, the shipped
   text-to-image model draws four images each (DPM-Solver++, 20 steps, guidance 3) into outputs/demo/NN_words/
   (000.png ..., grid.png, denoise.gif, meta.json, as `python -m minidiff sample --prompt` writes them), and
   outputs/demo/prompts.png shows all of them, one row per prompt. Then the text-to-emoji model does the same
   for four emoji prompts, one a person in a skin tone never drawn in training and one a thing asked in the
   style it was never shown in, into outputs/demo/emoji/ (its overview: outputs/demo/emoji/prompts.png).
2. For each noise schedule, one picture of the forward process: a photo, digits and shapes on their way to noise.
3. An input and a mask to try editing on: outputs/example_input.png (a red circle) and outputs/example_mask.png,
   both 32x32 like every image the model draws, the mask white where `sample --mask` regenerates, black where it keeps.
"""

import argparse
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # the demo only writes files; never needs a screen
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from minidiff.cli.options import check_counts, check_seed, use_threads  # noqa: E402
from minidiff.data.digits import mnist5k  # noqa: E402
from minidiff.data.photo import photo  # noqa: E402
from minidiff.data.pixels import from_model, to_model  # noqa: E402
from minidiff.data.shapes import COLOURS, render, shapes  # noqa: E402
from minidiff.diffusion.forward import q_sample  # noqa: E402
from minidiff.diffusion.schedule import make_schedule  # noqa: E402
from minidiff.files.images import write_folder, write_png  # noqa: E402
from minidiff.pipeline import DEFAULT_MODEL, TextToImage  # noqa: E402

PROMPTS = (
    "a large red circle in the top left",
    "a small blue square in the bottom right",
    "a green triangle in the center",
    "a large yellow square in the top right",  # held out: no yellow square was ever in training
    "a small purple triangle in the bottom left",  # held out: no purple triangle either
)
EMOJI_PROMPTS = (
    "fox in noto style",
    "red apple in twemoji style",
    "boy: dark skin tone",  # held out: this person never in this tone in training (minidiff.data.emoji splits)
    "anchor in twemoji style",  # held out: the anchor was only ever drawn in noto style
)
SCHEDULES = {  # title -> (name, zero_terminal_snr)
    "linear": ("linear", False),
    "cosine": ("cosine", False),
    "sigmoid": ("sigmoid", False),
    "linear_zero_terminal_snr": ("linear", True),
}


def slug(index: int, prompt: str) -> str:
    """A folder name for a prompt: "00_a_large_red_circle_in_the_top_left"."""
    return f"{index:02d}_" + "_".join(re.findall(r"[a-z]+", prompt.lower()))


def text_to_image(out: Path, pipe: TextToImage, model: str, n: int, seed: int,
                  prompts: tuple[str, ...] = PROMPTS) -> list[Path]:
    """Draw n images per prompt into out/NN_words/, and an overview, out/prompts.png. Returns the paths."""
    rows, paths = [], []
    for index, prompt in enumerate(prompts):
        result = pipe(prompt, n=n, seed=seed, sampler="dpm++", steps=20, guidance=3.0, keep_trajectory=True)
        frames = [np.concatenate(list(from_model(step.x0_image)), axis=1) for step in result.trajectory]
        folder = out / slug(index, prompt)
        settings = {"model": str(model), "prompt": prompt, "n": n, "seed": seed, "sampler": "dpm++", "steps": 20,
                    "guidance": 3.0, "nfe": result.nfe, "seconds": round(result.seconds, 3), "image_shape": [3, 32, 32]}
        write_folder(folder, from_model(result.images), frames, settings)
        rows.append(result.images)
        paths.append(folder)
        print(f"{prompt!r}: {folder}/ ({result.seconds:.1f} s)")
    paths.append(overview(out / "prompts.png", rows, prompts))
    return paths


def overview(path: Path, rows: list[torch.Tensor], prompts: tuple[str, ...] = PROMPTS) -> Path:
    """One figure: a row of images per prompt, the prompt written beside it."""
    n = len(rows[0])
    fig, axes = plt.subplots(len(rows), n, figsize=(1.1 * n + 3.2, 1.15 * len(rows)), squeeze=False)
    for row, (prompt, images) in enumerate(zip(prompts, rows)):
        for col, image in enumerate(from_model(images)):
            axes[row, col].imshow(image)
            axes[row, col].set_xticks([]), axes[row, col].set_yticks([])
        axes[row, 0].set_ylabel(prompt.replace(" in the ", "\nin the "), rotation=0, ha="right", va="center",
                                fontsize=8)
    fig.suptitle("minidiff: text to image (DPM-Solver++, 20 steps, guidance 3)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"overview: {path}")
    return path


def demo_images(n_digits: int = 3, n_shapes: int = 3) -> list[torch.Tensor]:
    """The pictures that go to noise: the photo, a few digits, a few shapes, each as (1, C, H, W) in [-1, 1]."""
    digits, labels = mnist5k()
    first_of_each = [int(np.flatnonzero(labels == k)[0]) for k in range(n_digits)]
    shape_images, _, _ = shapes(n_shapes, split="train", seed=0)
    images = [to_model(photo(64)[None])]
    images += [to_model(digits[i][None]) for i in first_of_each]
    images += [to_model(shape_images[i][None]) for i in range(n_shapes)]
    return images


def forward_figure(title: str, images: list[torch.Tensor], timesteps: list[int], schedule, seed: int = 0):
    """A grid: one row per image, one column per step t, each cell x_t drawn from q(x_t | x0)."""
    fig, axes = plt.subplots(len(images), len(timesteps), figsize=(1.3 * len(timesteps), 1.3 * len(images)))
    generator = torch.Generator().manual_seed(seed)
    for row, x0 in enumerate(images):
        eps = torch.randn(x0.shape, generator=generator)  # one noise draw per image, reused across t
        for col, t in enumerate(timesteps):
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


def forward_pictures(out: Path, seed: int) -> list[Path]:
    """One forward-process picture per schedule in `out`."""
    images, timesteps, paths = demo_images(), [0, 50, 100, 200, 300, 500, 700, 999], []
    for title, (name, zero_terminal_snr) in SCHEDULES.items():
        schedule = make_schedule(name, 1000, zero_terminal_snr=zero_terminal_snr)
        fig = forward_figure(title, images, timesteps, schedule, seed=seed)
        path = out / f"forward_{title}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
        print(f"wrote {path}")
    return paths

def example_edit_files(out: Path) -> list[Path]:
    """out/example_input.png, a red circle in the centre, and out/example_mask.png, white (regenerate) over the
    circle's 16x16 square and black (keep) elsewhere: uint8 32x32 pictures for `sample --init-image ... --mask`."""
    circle = render({"shape": "circle", "side": 14, "cx": 16.0, "cy": 16.0, "rgb": COLOURS["red"]})  # (32, 32, 3)
    mask = np.zeros((32, 32, 1), dtype=np.uint8)
    mask[8:24, 8:24] = 255  # rows and columns 8 ... 23: the circle and a little white around it
    paths = [out / "example_input.png", out / "example_mask.png"]
    write_png(circle, paths[0])
    write_png(mask, paths[1])
    print(f"an input and a mask to edit (32x32; white = regenerate): {paths[0]}, {paths[1]}")
    return paths


def demo(args: argparse.Namespace) -> list[Path]:
    """Text to image into args.out/demo/, then the forward-process pictures into args.out/."""
    check_counts(args, "n")
    check_seed(args.seed)
    use_threads(args.threads)
    pipe = TextToImage.load(args.model)  # a wrong model is refused before anything is written
    emoji_pipe = TextToImage.load(args.emoji_model)
    out = Path(args.out)
    (out / "demo" / "emoji").mkdir(parents=True, exist_ok=True)
    print(f"text to image with {args.model} ({len(PROMPTS)} prompts, {args.n} images each):")
    paths = text_to_image(out / "demo", pipe, args.model, args.n, args.seed)
    print(f"text to emoji with {args.emoji_model} ({len(EMOJI_PROMPTS)} prompts, {args.n} images each):")
    paths += text_to_image(out / "demo" / "emoji", emoji_pipe, args.emoji_model, args.n, args.seed, EMOJI_PROMPTS)
    paths += forward_pictures(out, args.seed)
    paths += example_edit_files(out)
    return paths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the demo's options on its sub-command parser."""
    parser.add_argument("--out", default="outputs", help="folder for the pictures (default: outputs)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"text-to-image model (default: {DEFAULT_MODEL})")
    parser.add_argument("--emoji-model", default="emoji", help="text-to-emoji model (default: emoji)")
    parser.add_argument("--n", type=int, default=4, help="images per prompt (default: 4)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise (default: 0)")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for torch (default: 1; the models are small, and a second thread that has "
                             "to wait for a busy core slows them down many times)")
    parser.set_defaults(run=demo)
