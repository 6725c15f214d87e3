"""`python -m minidiff sample`: draw images from a trained model and write them to a folder.

    python -m minidiff sample --model mnist --label 7 --n 16 --seed 0 --sampler ddpm --steps 1000 --out DIR
    python -m minidiff sample --model mnist --label 7 --sampler dpm++ --steps 20 --guidance 3 --out DIR
    python -m minidiff sample --prompt "a large red circle in the top left" --out DIR   # text to image
    python -m minidiff sample --prompt "a blue circle" --init-image in.png --strength 0.6 --out DIR  # img2img
    python -m minidiff sample --prompt "a green square" --init-image in.png --mask mask.png --out DIR  # inpainting

With --prompt the model defaults to the shipped text-to-image model, the sampler to DPM-Solver++ with 20 steps and
guidance to 3, and the GIF shows each step's decoded prediction (minidiff.pipeline).

writes DIR/000.png, DIR/001.png, ... (each image at its native resolution), DIR/grid.png (all of them),
DIR/denoise.gif (the first few images on their way from noise to picture) and DIR/meta.json (every setting:
sampler, steps, spacing, eta, guidance, the number of network evaluations and the time taken).
The image helpers here also draw training's sample grids.
"""

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from minidiff.files.checkpoint import atomic_write_bytes


def image_grid(images: np.ndarray, columns: int, padding: int = 2) -> np.ndarray:
    """uint8 images (N, H, W, C) -> one uint8 picture (rows * (H + padding) + padding, ..., C), white between."""
    N, H, W, C = images.shape
    rows = -(-N // columns)  # ceil(N / columns)
    grid = np.full((rows * (H + padding) + padding, columns * (W + padding) + padding, C), 255, dtype=np.uint8)
    for i, image in enumerate(images):
        top, left = padding + (i // columns) * (H + padding), padding + (i % columns) * (W + padding)
        grid[top:top + H, left:left + W] = image
    return grid


def to_pil(image: np.ndarray) -> Image.Image:
    """uint8 (H, W, 1) -> a grey PIL image; uint8 (H, W, 3) -> an RGB one."""
    return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


def write_png(image: np.ndarray, path: Path | str) -> None:
    """Write a uint8 (H, W, C) image as a PNG, atomically."""
    buffer = io.BytesIO()
    to_pil(image).save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def write_gif(frames: list[np.ndarray], path: Path | str, frame_ms: int = 80, last_frame_ms: int = 1500) -> None:
    """Write uint8 (H, W, C) frames as a looping GIF, each enlarged GIF_SCALE times, the last one held longer."""
    pictures = [to_pil(frame) for frame in frames]
    pictures = [p.resize((p.width * GIF_SCALE, p.height * GIF_SCALE), Image.Resampling.NEAREST) for p in pictures]
    durations = [frame_ms] * (len(pictures) - 1) + [last_frame_ms]
    buffer = io.BytesIO()
    pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:], duration=durations, loop=0)
    atomic_write_bytes(path, buffer.getvalue())


GIF_SCALE = 4  # the GIF is enlarged (nearest neighbour) so that 28x28 digits are visible when it plays


def read_image(path: str, size: int = 32) -> np.ndarray:
    """An RGB image file -> uint8 (size, size, 3); a clear error for another size or a file that is no image."""
    try:
        with Image.open(path) as image:
            image.load()
    except (FileNotFoundError, OSError) as error:
        raise ValueError(f"cannot read the image {path}: {error}") from None
    if image.size != (size, size):
        raise ValueError(f"{path} is {image.size[0]}x{image.size[1]}; the model draws {size}x{size} images: resize "
                         "it first (e.g. PIL's Image.resize)")
    if image.mode not in ("RGB", "RGBA", "L", "P"):
        raise ValueError(f"{path} has mode {image.mode}; give an RGB (or greyscale) image")
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def read_mask(path: str, size: int = 32) -> torch.Tensor:
    """A mask image file (white = regenerate, black = keep) -> regenerate share (1, 1, size, size) in [0, 1]."""
    try:
        with Image.open(path) as image:
            grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    except (FileNotFoundError, OSError) as error:
        raise ValueError(f"cannot read the mask {path}: {error}") from None
    if grey.shape != (size, size):
        raise ValueError(f"the mask {path} is {grey.shape[1]}x{grey.shape[0]}; it must be {size}x{size} like the "
                         "image (white = regenerate, black = keep)")
    return torch.from_numpy(grey)[None, None]
