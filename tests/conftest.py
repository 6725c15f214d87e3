"""Test-wide settings.

Unit tests use small tensors, where torch's thread pool costs more than it saves on a 2-core machine
(measured: the training and sampler tests ran about 4x slower with 2 threads). Chapters run in their own
kernels and are not affected.
"""

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # diffusers is a reference only; nothing may reach the network
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_vae(tmp_path_factory):
    """A seconds-long autoencoder checkpoint (STEM path): its weights are poor, but every path through the code is
    real. Shared by the latent, pipeline, editing and demo tests."""
    from minidiff.training.presets import AUTOENCODER_PRESETS
    from minidiff.training.vae import train_vae

    folder = tmp_path_factory.mktemp("vae")
    train_vae(AUTOENCODER_PRESETS["tiny"](), folder, progress=False)
    return folder / "autoencoder"


@pytest.fixture(scope="session")
def tiny_text_model(tiny_vae, tmp_path_factory):
    """A text-conditioned latent model trained for 3 steps on the tiny autoencoder: a run folder to load."""
    from minidiff.nets.conditioning import EncoderConfig
    from minidiff.nets.text import MAX_LENGTH
    from minidiff.training.loop import train
    from minidiff.training.presets import PRESETS

    folder = tmp_path_factory.mktemp("text")
    config = PRESETS["tiny_latent"]()
    config.autoencoder, config.steps = str(tiny_vae), 3
    config.encoder = EncoderConfig(kind="text", dim=16, length=MAX_LENGTH, layers=1, heads=2)
    train(config, folder, device="cpu", progress=False)
    return folder
