"""What a training run is set up with: `TrainConfig`, its named presets, and the data it reads.

Presets: "mnist" (the shipped class-conditional MNIST-5k model), "tiny" (a seconds-long run for tests),
"shapes_latent" (latent diffusion on the Shapes dataset, conditioned on its attributes) and "tiny_latent".
"""

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from minidiff.conditioning import EncoderConfig, condition_tokens
from minidiff.data import mnist5k, shapes, to_model
from minidiff.forward import PREDICTIONS
from minidiff.latent import encoded_shapes
from minidiff.schedule import SCHEDULES
from minidiff.text import MAX_LENGTH
from minidiff.unet import UNetConfig

DATASETS = ("mnist5k", "shapes", "shapes_latents")  # digits, Shapes in pixel space, Shapes as autoencoder latents


@dataclass
class TrainConfig:
    """Every setting of a training run. Stored in the run's train_state.json; `--resume` reads it back."""

    unet: UNetConfig = field(default_factory=lambda: UNetConfig(num_classes=10))  # its .prediction is the target
    data: str = "mnist5k"  # the data set (see DATASETS)
    max_images: int | None = None  # train on N images spread evenly over the set (tests); None = all
    # latent diffusion (data "shapes_latents"): which autoencoder, how many Shapes to render and encode once
    autoencoder: str | None = None  # a shipped name ("shapes_vae") or a path; its scale factor comes with it
    dataset_size: int = 20000  # Shapes images of the "train" split, rendered from `seed`
    # token conditioning (cross-attention) instead of class labels: the encoder's settings, None = none
    encoder: EncoderConfig | None = None
    token_drop_prob: float = 0.0  # share of single words dropped (partial prompts); the whole condition: class_drop_prob
    schedule: str = "cosine"  # Nichol & Dhariwal 2021: better than linear for small images and for fewer sampling steps
    T: int = 1000  # diffusion steps, as in DDPM
    zero_terminal_snr: bool = False  # Lin et al. 2023; needs prediction "v" or "x0"
    batch_size: int = 128
    lr: float = 5e-4  # peak learning rate; a small U-Net on 28x28 digits takes more than DDPM's 2e-4
    weight_decay: float = 0.0  # DDPM uses none
    warmup_steps: int = 200  # linear warm-up of the learning rate
    grad_clip: float = 1.0  # clip the gradient's global norm, as DDPM does
    ema_decay: float = 0.999  # short runs: the average spans ~1000 steps (DDPM: 0.9999 over 800k steps)
    min_snr_gamma: float | None = 5.0  # Hang et al. 2023's recommended gamma; None = plain, unweighted MSE
    class_drop_prob: float = 0.1  # share of labels (or token conditions) dropped to the null one, for guidance
    steps: int | None = 5000  # stop after this many steps in all (None = no step limit); 5000 x 128 = 128 epochs
    minutes: float | None = None  # stop after this many minutes in all, resumed sessions included (None = no limit)
    checkpoint_every_steps: int | None = None  # also checkpoint every N steps (None = only by minutes)
    checkpoint_every_minutes: float | None = 10.0  # checkpoint at least this often (and always at the end)
    sample_every_steps: int | None = 500  # write a sample grid to samples/ every N steps (and at the end)
    sample_grid_steps: int = 100  # DDPM steps for those grids: evenly spaced, so they are quick
    seed: int = 0  # weights, batch order, noise and dropout all follow from it

    def __post_init__(self):
        if isinstance(self.unet, dict):
            self.unet = UNetConfig.from_dict(self.unet)
        if isinstance(self.encoder, dict):
            self.encoder = EncoderConfig(**self.encoder)
        if self.data not in DATASETS:
            raise ValueError(f"unknown data set {self.data!r}; choose one of {DATASETS}")
        if self.data.startswith("shapes") and self.encoder is None:
            raise ValueError(f"data {self.data!r} is conditioned on attribute tokens: give an encoder (EncoderConfig)")
        if self.data == "shapes_latents" and self.autoencoder is None:
            raise ValueError("data 'shapes_latents' needs an autoencoder (e.g. 'shapes_vae') to encode the images")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose one of {SCHEDULES}")
        if self.unet.prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction {self.unet.prediction!r}; choose one of {PREDICTIONS}")
        if self.steps is None and self.minutes is None:
            raise ValueError("give steps or minutes (or both): a run needs a stopping point")
        if self.batch_size < 1 or (self.max_images is not None and self.max_images < self.batch_size):
            raise ValueError(f"batch_size must be at least 1 and at most the number of images, got {self.batch_size}")

    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of what the U-Net denoises: MNIST digits, or the 8 x 8 latents of 32 x 32 Shapes."""
        if self.data == "shapes_latents":
            return (self.unet.in_channels, 8, 8)  # the autoencoder downsamples 32 x 32 by 4
        if self.data == "shapes":
            return (3, 32, 32)
        return (1, 28, 28)

    def finished(self, step: int, minutes: float) -> bool:
        """Whether the run has reached its step or time budget."""
        return (self.steps is not None and step >= self.steps) or (self.minutes is not None and minutes >= self.minutes)

    def checkpoint_due(self, step: int, minutes_since_last: float) -> bool:
        """Whether to write a checkpoint now (besides the one at the end)."""
        by_steps = self.checkpoint_every_steps is not None and step % self.checkpoint_every_steps == 0
        by_time = self.checkpoint_every_minutes is not None and minutes_since_last >= self.checkpoint_every_minutes
        return by_steps or by_time

    def math_fields(self) -> list[str]:
        """The settings that change what is computed. The others (budget, checkpoint and grid intervals) may
        change when a run is resumed."""
        schedule_only = {"steps", "minutes", "checkpoint_every_steps", "checkpoint_every_minutes", "sample_every_steps"}
        return [f.name for f in fields(self) if f.name not in schedule_only]

    def to_dict(self) -> dict:
        """A JSON-ready dict (the U-Net config nested)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {sorted(unknown)}; known fields are {sorted(known)}")
        return cls(**d)


def mnist_config() -> TrainConfig:
    """The shipped model: class-conditional MNIST-5k, a 32-64-64 U-Net (1.74M parameters, 7 MB) with attention at 7x7.

    The (1, 2, 2) channel pattern is DDPM's CIFAR-10 one, scaled down to fit the 10 MB budget for shipped weights.
    1,000 steps of 128 images are 128k images, 26 epochs: about 20 minutes on an idle 2-core CPU (~110 images/s).
    Digits are clean and follow their label from about step 500 on.
    """
    unet = UNetConfig(in_channels=1, channels=(32, 64, 64), attention_levels=(False, False, True), num_classes=10,
                      prediction="eps")
    return TrainConfig(unet=unet, steps=1000, checkpoint_every_minutes=5.0)


def tiny_config() -> TrainConfig:
    """A run of a few seconds for tests: a two-level 8-16 channel U-Net, T = 100, 64 images, 4 batches per epoch."""
    unet = UNetConfig(in_channels=1, channels=(8, 16), blocks_per_level=1, attention_levels=(False, True), heads=2,
                      groups=4, num_classes=10, dropout=0.1)
    return TrainConfig(unet=unet, max_images=64, T=100, batch_size=16, lr=1e-3, warmup_steps=5, steps=20,
                       checkpoint_every_minutes=None, sample_every_steps=None, sample_grid_steps=10)


def shapes_latent_config() -> TrainConfig:
    """Latent diffusion on Shapes: a 64-128 U-Net over the 8 x 8 x 4 latents of the shipped VAE, conditioned on the
    four attributes through cross-attention at both levels (8 x 8 and 4 x 4) and in the middle.

    v-prediction: with the cosine schedule alpha_bar[T-1] is 2.4e-9, where an eps-prediction's x0 = (x_t - ...) /
    sqrt(alpha_bar) magnifies any error 20,000 times; the latents cannot be clipped to [-1, 1] the way pixels can,
    and v gives x0 without that division (Salimans & Ho 2022, sec. 4).
    """
    unet = UNetConfig(in_channels=4, channels=(64, 128), attention_levels=(True, True), heads=4, context_dim=64,
                      prediction="v", dropout=0.1)
    return TrainConfig(unet=unet, data="shapes_latents", autoencoder="shapes_vae", encoder=EncoderConfig(dim=64),
                       token_drop_prob=0.1, batch_size=128, lr=5e-4, steps=6000, checkpoint_every_minutes=5.0,
                       sample_every_steps=1000, sample_grid_steps=50)


def shapes_pixel_config() -> TrainConfig:
    """The pixel-space twin of shapes_latent, for the cost benchmark (benchmarks/latent_cost.py): the same widths,
    blocks, encoder and schedule on 32 x 32 x 3 pixels. Attention sits where a pixel model would put it, at 16 x 16
    and in the middle: at 32 x 32 (1,024 positions) it alone would cost more than the whole latent U-Net."""
    config = shapes_latent_config()
    config.unet = UNetConfig(**{**config.unet.to_dict(), "in_channels": 3, "attention_levels": (False, True)})
    config.data, config.autoencoder = "shapes", None
    return config


def shapes_text_config() -> TrainConfig:
    """Text-to-image: shapes_latent's U-Net, read through cross-attention by a tiny 2-block transformer over the
    caption's words (minidiff.text), trained together. Captions are full or shortened (training_captions); one in
    ten is dropped to the empty prompt for classifier-free guidance."""
    config = shapes_latent_config()
    config.encoder = EncoderConfig(kind="text", dim=64, length=MAX_LENGTH, layers=2, heads=4)
    config.token_drop_prob = 0.0  # shortened captions already leave words out
    return config


def tiny_latent_config() -> TrainConfig:
    """A latent run of a few seconds for tests (needs the shipped VAE): 256 Shapes, an 8-16 channel U-Net."""
    unet = UNetConfig(in_channels=4, channels=(8, 16), blocks_per_level=1, attention_levels=(False, True), heads=2,
                      groups=4, context_dim=16, prediction="v", dropout=0.0)
    return TrainConfig(unet=unet, data="shapes_latents", autoencoder="shapes_vae", encoder=EncoderConfig(dim=16),
                       dataset_size=256, T=100, batch_size=16, lr=1e-3, warmup_steps=5, steps=20, token_drop_prob=0.1,
                       checkpoint_every_minutes=None, sample_every_steps=None, sample_grid_steps=10)


PRESETS = {"mnist": mnist_config, "tiny": tiny_config, "shapes_latent": shapes_latent_config,
           "shapes_pixel": shapes_pixel_config, "shapes_text": shapes_text_config, "tiny_latent": tiny_latent_config}


def load_images(config: TrainConfig, cache_dir: Path | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The training set in memory: x0 (N, C, H, W) float32 and its conditions.

    MNIST-5k: digits in [-1, 1] (N, 1, 28, 28) and labels (N,) int64. Shapes: images in [-1, 1] (N, 3, 32, 32) and
    attribute tokens (N, 5). Shapes latents: the autoencoder's scaled latents (N, 4, 8, 8) and attribute tokens,
    encoded once and cached in cache_dir (the run folder).
    """
    if config.data == "shapes_latents":
        return encoded_shapes(config.autoencoder, config.dataset_size, config.seed, cache_dir, config.encoder.kind)
    if config.data == "shapes":
        images, _, attributes = shapes(config.dataset_size, "train", config.seed)
        return to_model(images), condition_tokens(attributes, config.encoder.kind)
    images, labels = mnist5k()
    if config.max_images is not None:
        keep = np.linspace(0, len(images) - 1, config.max_images).round().astype(int)  # MNIST-5k is sorted by digit
        images, labels = images[keep], labels[keep]
    return to_model(images), torch.from_numpy(labels)
