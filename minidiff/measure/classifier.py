"""A small CNN that reads MNIST digits: the judge behind `minidiff.measure.metrics`.

It plays the role Inception-v3 plays for ImageNet FID (Heusel et al. 2017): its predicted class tells whether a
generated digit is the one that was asked for, and its penultimate layer (a 128-d vector) is the feature space in
which the Fréchet distance compares generated digits with real ones.

Layout (LeCun et al. 1998 in spirit): three conv + ReLU + max-pool blocks, 28 -> 14 -> 7 -> 3 pixels, then a
hidden linear layer (the features) and a linear read-out to 10 logits.

Training (`scripts/train_digit_classifier.py`) holds out 50 digits per class of MNIST-5k (`held_out_split`) to
measure accuracy, and shifts each training digit by up to 2 pixels (`random_shift`) so that the classifier does
not depend on the exact centring of real MNIST digits, which generated digits need not copy.
"""

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn


@dataclass
class DigitClassifierConfig:
    channels: tuple[int, ...] = (16, 32, 64)  # doubling per block, as each pool halves the picture
    feature_dim: int = 128  # size of the penultimate layer, the space of the Fréchet distance
    num_classes: int = 10  # the digits 0 ... 9
    image_size: int = 28  # MNIST


class DigitClassifier(nn.Module):
    """Conv blocks -> 128-d features -> 10 logits. Takes images (B, 1, 28, 28) in [-1, 1]."""

    def __init__(self, config: DigitClassifierConfig | None = None):
        super().__init__()
        config = config or DigitClassifierConfig()
        self.config = config
        blocks = []
        in_channels = 1
        size = config.image_size
        for out_channels in config.channels:
            blocks += [nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            in_channels = out_channels
            size = size // 2  # 28 -> 14 -> 7 -> 3
        self.blocks = nn.Sequential(*blocks)
        self.hidden = nn.Linear(in_channels * size * size, config.feature_dim)
        self.readout = nn.Linear(config.feature_dim, config.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features: images (B, 1, 28, 28) -> (B, feature_dim), after the ReLU."""
        h = self.blocks(x)  # (B, 1, 28, 28) -> (B, 64, 3, 3)
        h = h.flatten(1)  # (B, 64, 3, 3) -> (B, 576)
        return torch.relu(self.hidden(h))  # (B, 576) -> (B, feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits: images (B, 1, 28, 28) -> (B, num_classes)."""
        return self.readout(self.features(x))  # (B, feature_dim) -> (B, num_classes)


def held_out_split(labels: np.ndarray, per_class: int = 50, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (train, held_out): `per_class` random digits of each class are held out, seeded."""
    rng = np.random.default_rng(seed)
    held_out = []
    for digit in range(int(labels.max()) + 1):
        of_this_digit = np.flatnonzero(labels == digit)
        if len(of_this_digit) <= per_class:
            raise ValueError(f"digit {digit} has only {len(of_this_digit)} examples; cannot hold out {per_class}")
        held_out.append(rng.choice(of_this_digit, size=per_class, replace=False))
    held_out = np.sort(np.concatenate(held_out))
    train = np.setdiff1d(np.arange(len(labels)), held_out)
    return train, held_out


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Move each image (B, C, H, W) by its own random offset of up to `max_shift` pixels; the edge fills with -1."""
    B, C, H, W = x.shape
    padded = nn.functional.pad(x, (max_shift,) * 4, value=-1.0)  # (B, C, H, W) -> (B, C, H + 2s, W + 2s)
    offsets = torch.randint(0, 2 * max_shift + 1, (B, 2), generator=generator)
    shifted = torch.empty_like(x)
    for i, (dy, dx) in enumerate(offsets.tolist()):
        shifted[i] = padded[i, :, dy:dy + H, dx:dx + W]
    return shifted


def save_classifier(model: DigitClassifier, weights_path: Path | str, info: dict) -> None:
    """Write the weights (safetensors) and a JSON file with the config plus `info`, each atomically."""
    weights_path = Path(weights_path)
    config_path = weights_path.with_suffix(".json")
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = weights_path.with_suffix(".tmp.safetensors")
    save_file({name: value.contiguous() for name, value in model.state_dict().items()}, str(tmp))
    os.replace(tmp, weights_path)  # a reader never sees a half-written file
    record = {"config": asdict(model.config), **info}
    tmp = config_path.with_suffix(".tmp.json")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, config_path)


def load_classifier(weights_path: Path | str, device: torch.device | str = "cpu") -> DigitClassifier:
    """Read a classifier written by `save_classifier` (weights + the JSON beside them), in eval mode."""
    weights_path = Path(weights_path)
    config_path = weights_path.with_suffix(".json")
    retrain = "retrain it with `python scripts/train_digit_classifier.py`"
    for path in (weights_path, config_path):
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing; it ships with the repository ({retrain})")
    try:
        record = json.loads(config_path.read_text())
        config = DigitClassifierConfig(**{**record["config"], "channels": tuple(record["config"]["channels"])})
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{config_path} is not a valid classifier config ({error}); {retrain}") from error
    model = DigitClassifier(config)
    try:
        model.load_state_dict(load_file(str(weights_path), device=str(device)))
    except (SafetensorError, RuntimeError, OSError) as error:
        raise ValueError(f"{weights_path} is not a readable digit classifier checkpoint ({error}); {retrain}") from error
    return model.to(device).eval()
