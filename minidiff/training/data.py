"""The data a diffusion run trains on, in memory: MNIST-5k digits with their labels, or Shapes or emoji with their
tokens.

`load_images` reads the set that `TrainConfig.data` names: digits in [-1, 1] with class labels; Shapes images in
[-1, 1]; or, for latent diffusion, Shapes or emoji encoded once by the autoencoder into scaled latents
(`encoded_shapes`, `encoded_emoji`; Rombach et al. 2022, sec. 3 and 4.3.2). Shapes come with the tokens their
encoder reads (`minidiff.nets.conditioning.condition_tokens`): attribute tokens, or the words of their captions;
emoji with the byte-pair pieces of their captions, which a frozen CLIP's text tower reads. Encoded latents are
cached in the run folder (`cache_path`), under a name that holds the autoencoder's weights' sha256, so a new
autoencoder never meets old latents.
"""

from pathlib import Path

import numpy as np
import safetensors.torch
import torch

from minidiff.data.digits import mnist5k
from minidiff.data.emoji import emoji
from minidiff.data.pixels import to_model
from minidiff.data.shapes import shapes
from minidiff.files.atomic import atomic_write_bytes
from minidiff.models import load_autoencoder
from minidiff.nets.autoencoder import encode_images
from minidiff.nets.conditioning import EncoderConfig, condition_tokens, training_captions
from minidiff.nets.prompts import prompt_tokens
from minidiff.training.config import TrainConfig


def load_images(config: TrainConfig, cache_dir: Path | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The training set in memory: x0 (N, C, H, W) float32 and its conditions, class labels (N,) or token ids (N, L).

    MNIST-5k: digits in [-1, 1] (N, 1, 28, 28) and class labels (N,) int64. Shapes: images in [-1, 1]
    (N, 3, 32, 32) and attribute tokens (N, 5). Shapes latents: the autoencoder's scaled latents (N, 4, 8, 8) and attribute tokens,
    encoded once and cached in cache_dir (the run folder).
    """
    if config.data == "shapes_latents":
        return encoded_shapes(config.autoencoder, config.dataset_size, config.seed, cache_dir, config.encoder.kind)
    if config.data == "emoji_latents":
        return encoded_emoji(config.autoencoder, config.encoder, cache_dir, config.max_images)
    if config.data == "shapes":
        images, _, attributes = shapes(config.dataset_size, "train", config.seed)
        return to_model(images), condition_tokens(attributes, config.encoder.kind)
    images, labels = mnist5k()
    if config.max_images is not None:
        keep = np.linspace(0, len(images) - 1, config.max_images).round().astype(int)  # MNIST-5k is sorted by digit
        images, labels = images[keep], labels[keep]
    return to_model(images), torch.from_numpy(labels)


def cache_path(cache_dir: Path, autoencoder_sha256: str, n: int, seed: int, name: str = "") -> Path:
    """Where the latents of n Shapes (seed), or of another set `name`, under one autoencoder (its weights' sha256)
    are kept."""
    return Path(cache_dir) / f"latents_{name}{autoencoder_sha256[:12]}_n{n}_seed{seed}.safetensors"


def encoded_latents(autoencoder_name: str, images: np.ndarray, path_of, cache: bool) -> torch.Tensor:
    """uint8 images (N, 32, 32, 3) -> their scaled latents (N, 4, 8, 8), read from path_of(sha256) if it exists, else
    encoded (and, when `cache`, written there atomically, as safetensors)."""
    autoencoder, info = load_autoencoder(autoencoder_name)
    path = path_of(info.latent_space) if cache else None  # a decoder fine-tuned alone leaves the latents as they were
    if path is not None and path.exists():
        return safetensors.torch.load_file(path)["z0"]
    z0 = encode_images(autoencoder, to_model(images), info.scale_factor)  # (N, 3, 32, 32) -> (N, 4, 8, 8)
    if path is not None:
        atomic_write_bytes(path, safetensors.torch.save({"z0": z0.contiguous()}))
    return z0


def encoded_shapes(autoencoder_name: str, n: int, seed: int = 0, cache_dir: Path | str | None = None,
                   condition: str = "attributes") -> tuple[torch.Tensor, torch.Tensor]:
    """The training set of latent diffusion: n Shapes of the train split, encoded once.

    Returns scaled latents z0 (n, 4, 8, 8) and their condition's tokens: attribute tokens (n, 5) for condition
    "attributes", caption words (n, 10) for "text" (`training_captions`: full or shortened, seeded). With
    cache_dir, the latents are saved there (safetensors, atomically) and read back next time: the file name names
    the autoencoder's weights, so a new autoencoder never meets old latents.
    """
    images, _, attributes = shapes(n, "train", seed)
    captions = training_captions(attributes, seed) if condition == "text" else None
    tokens = condition_tokens(attributes, condition, captions)
    z0 = encoded_latents(autoencoder_name, images, lambda sha256: cache_path(Path(cache_dir), sha256, n, seed),
                         cache_dir is not None)
    return z0, tokens


def encoded_emoji(autoencoder_name: str, encoder: EncoderConfig, cache_dir: Path | str | None = None,
                  max_images: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The training set of the emoji model: every image of the emoji train split twice, once with its caption
    ("fox") and once with its style ("fox in noto style"), so the model learns to draw from both. max_images: only
    that many images, spread evenly over the split (a quick run: encoding all of them takes minutes on a CPU).

    Returns scaled latents z0 (2N, 4, 8, 8), encoded once (and cached in cache_dir, as `encoded_shapes` does), and
    the captions' byte-pair tokens (2N, encoder.length): the N plain captions first, then the N styled ones.
    """
    data = emoji("train")
    if max_images is not None and max_images < len(data):
        data = data.subset(np.linspace(0, len(data) - 1, max_images).round().astype(int))
    tokens = prompt_tokens([*data.captions.tolist(), *data.styled_captions()], encoder)  # (2N, L)
    z0 = encoded_latents(autoencoder_name, data.images,
                         lambda sha256: cache_path(Path(cache_dir), sha256, len(data), 0, "emoji_"),
                         cache_dir is not None)  # (N, 4, 8, 8)
    return torch.cat([z0, z0]), tokens
