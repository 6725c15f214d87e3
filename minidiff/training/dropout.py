"""Dropout whose masks belong to the images: the same masks however a batch is split into processes or micro-batches.

nn.Dropout draws one mask for its whole input from torch's global random stream, so the mask an image gets depends
on where it sits in the batch and on which process computes it: two processes with 64 images each would draw other
masks than one process with 128, and their runs would differ. `PerImageDropout` draws each image's mask from the
image's own generator instead, seeded from (the run's seed, the step, the image's position in the batch);
`use_per_image_dropout` puts it in place of every nn.Dropout of a model for training, and the training step names the
images of each micro-batch (`ImageGenerators.images`) before its forward pass. Each generator is used by the dropout
layers in the order they run, which is the same whatever the split. Dropout itself is Srivastava et al. 2014:
keep each activation with probability 1 - p and divide the kept ones by 1 - p, so the expectation is unchanged.
"""

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn


def image_seed(seed: int, step: int, position: int) -> int:
    """The seed of one image's generator: numpy's SeedSequence mixes (seed, step, position) into one 64-bit number,
    so that neighbouring images and steps get unrelated streams."""
    return int(np.random.SeedSequence([seed, step, position]).generate_state(1, dtype=np.uint64)[0])


class ImageGenerators:
    """One generator per image of the micro-batch being trained on, shared by every PerImageDropout of a model."""

    def __init__(self):
        self.generators: list[torch.Generator] | None = None  # None: no training step is running

    @contextlib.contextmanager
    def images(self, seed: int, step: int, positions: range, device: torch.device) -> Iterator[None]:
        """Within the block, dropout draws the masks of the images at `positions` of step `step`'s batch."""
        self.generators = [torch.Generator(device).manual_seed(image_seed(seed, step, p)) for p in positions]
        try:
            yield
        finally:
            self.generators = None


class PerImageDropout(nn.Dropout):
    """nn.Dropout with each image's mask drawn from its own generator (`ImageGenerators`).

    Outside a training step that names its images (e.g. a chapter calling the network by hand), it is nn.Dropout.
    """

    def __init__(self, p: float, generators: ImageGenerators):
        super().__init__(p)
        self.image_generators = generators

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        generators = self.image_generators.generators
        if not self.training or self.p == 0.0 or generators is None:
            return super().forward(x)
        if len(generators) != len(x):
            raise RuntimeError(f"{len(generators)} image generators for a batch of {len(x)}: name the images of "
                               "each micro-batch with ImageGenerators.images")
        uniform = torch.stack([torch.rand(x.shape[1:], generator=g, device=x.device) for g in generators])  # (B, ...)
        # keep with probability 1 - p, scaled by 1 / (1 - p) (Srivastava et al. 2014, at training time)
        return x * (uniform >= self.p) / (1.0 - self.p)


def use_per_image_dropout(model: nn.Module, generators: ImageGenerators) -> int:
    """Replace every nn.Dropout of `model` that drops anything by a PerImageDropout drawing from `generators`.
    Returns how many were replaced; the weights (and the state dict) do not change."""
    found = [(parent, name, child.p) for parent in model.modules() for name, child in parent.named_children()
             if type(child) is nn.Dropout and child.p > 0.0]
    for parent, name, p in found:
        setattr(parent, name, PerImageDropout(p, generators))
    return len(found)
