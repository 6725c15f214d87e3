"""What a training run is set up with: `TrainConfig`, its named presets, and the data it reads.

Presets: "mnist" (the shipped class-conditional MNIST-5k model) and "tiny" (a seconds-long run for tests).
"""

from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch

from minidiff.data import mnist5k, to_model
from minidiff.forward import PREDICTIONS
from minidiff.schedule import SCHEDULES
from minidiff.unet import UNetConfig

DATASETS = ("mnist5k",)


@dataclass
class TrainConfig:
    """Every setting of a training run. Stored in the run's train_state.json; `--resume` reads it back."""

    unet: UNetConfig = field(default_factory=lambda: UNetConfig(num_classes=10))  # its .prediction is the target
    data: str = "mnist5k"  # the data set (see DATASETS)
    max_images: int | None = None  # train on N images spread evenly over the set (tests); None = all
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
    class_drop_prob: float = 0.1  # share of labels replaced by the null class, for guidance (Ho & Salimans 2022)
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
        if self.data not in DATASETS:
            raise ValueError(f"unknown data set {self.data!r}; choose one of {DATASETS}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose one of {SCHEDULES}")
        if self.unet.prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction {self.unet.prediction!r}; choose one of {PREDICTIONS}")
        if self.steps is None and self.minutes is None:
            raise ValueError("give steps or minutes (or both): a run needs a stopping point")
        if self.batch_size < 1 or (self.max_images is not None and self.max_images < self.batch_size):
            raise ValueError(f"batch_size must be at least 1 and at most the number of images, got {self.batch_size}")

    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the training images."""
        return (1, 28, 28)  # MNIST-5k, the only data set so far

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


PRESETS = {"mnist": mnist_config, "tiny": tiny_config}


def load_images(config: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The training set in memory: x0 (N, C, H, W) float32 in [-1, 1] and labels (N,) int64."""
    images, labels = mnist5k()
    if config.max_images is not None:
        keep = np.linspace(0, len(images) - 1, config.max_images).round().astype(int)  # MNIST-5k is sorted by digit
        images, labels = images[keep], labels[keep]
    return to_model(images), torch.from_numpy(labels)
