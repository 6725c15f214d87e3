"""Image files: writing pictures, grids, GIFs and a folder of samples; reading an input image and a mask.

Every writer is atomic (`minidiff.files.atomic`). Images here are uint8 arrays (H, W, C), the model's [-1, 1] floats
converted with `minidiff.data.pixels.from_model`. The sample command writes its folders with `write_folder`;
training writes its sample grids with `picture_grid` and `write_png`.
"""

import io
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from minidiff.files.atomic import atomic_write_bytes


def picture_grid(images: np.ndarray, columns: int, padding: int = 2) -> np.ndarray:
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


def enlarged(picture: Image.Image, scale: int) -> Image.Image:
    """The picture `scale` times wider and taller, each pixel a scale x scale block (nearest neighbour, no blur)."""
    return picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)


def write_png(image: np.ndarray, path: Path | str, scale: int = 1) -> None:
    """Write a uint8 (H, W, C) image as a PNG, atomically, enlarged `scale` times (nearest neighbour)."""
    buffer = io.BytesIO()
    enlarged(to_pil(image), scale).save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def write_gif(frames: list[np.ndarray], path: Path | str, frame_ms: int = 80, last_frame_ms: int = 1500) -> None:
    """Write uint8 (H, W, C) frames as a looping GIF, each enlarged GIF_SCALE times, the last one held longer."""
    pictures = [to_pil(frame) for frame in frames]
    pictures = [enlarged(picture, GIF_SCALE) for picture in pictures]
    durations = [frame_ms] * (len(pictures) - 1) + [last_frame_ms]
    buffer = io.BytesIO()
    pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:], duration=durations, loop=0)
    atomic_write_bytes(path, buffer.getvalue())


GIF_SCALE = 4  # the GIF is enlarged (nearest neighbour) so that 28x28 digits are visible when it plays
GRID_SCALE = 4  # grid.png likewise: at 1x, four 32x32 images make a 138x36 strip too small to read


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
            rgb = np.asarray(image.convert("RGB"), dtype=np.int16)  # (size, size, 3)
            grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    except (FileNotFoundError, OSError) as error:
        raise ValueError(f"cannot read the mask {path}: {error}") from None
    if np.abs(rgb - rgb[..., :1]).max() > 2:  # a colour: its grey level would be a share nobody chose
        raise ValueError(f"the mask {path} has colours; a mask is black and white (white = regenerate, black = keep, "
                         "grey = a share of both)")
    if grey.shape != (size, size):
        raise ValueError(f"the mask {path} is {grey.shape[1]}x{grey.shape[0]}; it must be {size}x{size} like the "
                         "image (white = regenerate, black = keep)")
    return torch.from_numpy(grey)[None, None]


def write_folder(out: Path, images: np.ndarray, frames: list[np.ndarray], settings: dict) -> None:
    """Write 000.png, 001.png, ... (uint8 images (N, H, W, C), each at its native size), grid.png (all of them,
    enlarged GRID_SCALE times), denoise.gif and meta.json into `out`."""
    names = [f"{i:03d}.png" for i in range(len(images))]
    for stale in out.glob("[0-9][0-9][0-9].png"):  # an earlier run's images beyond this one's: meta.json lists these
        if stale.name not in names:
            stale.unlink()
    for name, image in zip(names, images):
        write_png(image, out / name)
    write_png(picture_grid(images, columns=min(len(images), 8)), out / "grid.png", scale=GRID_SCALE)
    write_gif(frames, out / "denoise.gif")
    meta = {**settings, "files": names + ["grid.png", "denoise.gif"]}
    atomic_write_bytes(out / "meta.json", (json.dumps(meta, indent=2) + "\n").encode())
