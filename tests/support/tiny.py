"""The tiny networks and inputs of the unit tests: seconds to build and run, every code path real, weights meaningless.

Every tiny U-Net is the same recipe, two levels of 8 and 16 channels with attention at the lower one; a test
overrides only what it is about (classes, a context width, latent channels).
"""

from dataclasses import replace

import torch

from minidiff.nets.autoencoder import AutoencoderConfig
from minidiff.nets.conditioning import ConditionedUNet, EncoderConfig
from minidiff.nets.text import MAX_LENGTH
from minidiff.nets.unet import UNet, UNetConfig
from minidiff.training.config import TrainConfig
from minidiff.training.presets import tiny_config

TINY_UNET = dict(channels=(8, 16), blocks_per_level=1, attention_levels=(False, True), heads=2, groups=4)
TINY_AUTOENCODER = AutoencoderConfig(channels=(8, 8, 8), groups=4)

RED_CIRCLE = {"colour": "red", "shape": "circle", "size": "small", "position": "top left"}  # every attribute named
PROMPT = "a small red circle in the top left"  # the same picture, as a caption


def tiny_unet_config(**overrides) -> UNetConfig:
    """The tiny U-Net's config, with `overrides` on top (any UNetConfig field)."""
    return UNetConfig(**{**TINY_UNET, **overrides})


def tiny_unet(seed: int = 0, **overrides) -> UNet:
    """A freshly initialised tiny U-Net (torch seeded with `seed` first), in eval mode."""
    torch.manual_seed(seed)
    return UNet(tiny_unet_config(**overrides)).eval()


def tiny_conditioned_unet(seed: int = 0, **overrides) -> ConditionedUNet:
    """A tiny U-Net on 4 latent channels with a 16-wide attribute-token encoder (torch seeded first), in eval mode."""
    torch.manual_seed(seed)
    config = tiny_unet_config(**{"in_channels": 4, "context_dim": 16, **overrides})
    return ConditionedUNet(config, EncoderConfig(dim=16)).eval()


def tiny_text_encoder() -> EncoderConfig:
    """A one-layer text encoder, 16 wide: what the tiny text-conditioned models train with."""
    return EncoderConfig(kind="text", dim=16, length=MAX_LENGTH, layers=1, heads=2)


def tiny_train_config(**changes) -> TrainConfig:
    """The `tiny` training preset (a class-conditional digit model, seconds on a CPU), with `changes` on top."""
    return replace(tiny_config(), **changes)
