"""A tiny class-conditional U-Net's checkpoint, as the file-format, training-state and model tests write it."""

from dataclasses import replace

import torch

from minidiff.models import CheckpointInfo
from minidiff.nets.unet import UNet
from support.tiny import tiny_unet_config

CONFIG = tiny_unet_config(num_classes=10)


def make_info(**changes) -> CheckpointInfo:
    info = CheckpointInfo(model=CONFIG.to_dict(), diffusion={"schedule": "cosine", "T": 100, "zero_terminal_snr": False,
                          "prediction": "eps"}, data={"name": "mnist5k", "image_shape": [1, 28, 28]},
                          command="python -m minidiff train --config tiny", seed=0, device="cpu", training_minutes=0.1,
                          step=7, metrics={"fid": 12.5})
    return replace(info, **changes)


def trained_model_and_optimizer(steps: int = 3):
    """A tiny U-Net after a few AdamW steps, so the optimizer state is not empty."""
    torch.manual_seed(0)
    model = UNet(CONFIG)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.01)
    for _ in range(steps):
        x = torch.randn(2, 1, 8, 8)
        loss = model(x, torch.tensor([3, 50]), torch.tensor([1, 10])).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model, optimizer


def assert_same_tensors(a: dict, b: dict):
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype and torch.equal(a[name], b[name]), name
