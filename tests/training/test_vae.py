"""The autoencoder's training: a tiny run resumes exactly, learns, and writes a checkpoint that loads."""

import numpy as np
import torch

from minidiff.files.training_state import load_training_state
from minidiff.models import load_autoencoder
from minidiff.training.presets import AUTOENCODER_PRESETS
from minidiff.training.vae import train_vae


def test_tiny_training_resumes_exactly_and_checkpoints_round_trip(tmp_path):
    whole = train_vae(AUTOENCODER_PRESETS["tiny"](), tmp_path / "whole", progress=False)
    half = AUTOENCODER_PRESETS["tiny"]()
    half.steps = 6
    train_vae(half, tmp_path / "split", progress=False)
    resumed = train_vae(AUTOENCODER_PRESETS["tiny"](), tmp_path / "split", resume=True, progress=False)
    losses = [load_training_state(tmp_path / name / "train_state").loss_history for name in ("whole", "split")]
    assert len(losses[0]) == 12 and losses[0] == losses[1]
    assert np.mean(losses[0][-3:]) < 0.8 * np.mean(losses[0][:3])  # it learns
    assert resumed.step == whole.step == 12
    model, info = load_autoencoder(tmp_path / "split")  # a run folder
    again, _ = load_autoencoder(tmp_path / "whole" / "autoencoder")
    for name, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[name]), name
    assert info.scale_factor > 0 and "psnr_heldout_db" in info.metrics and len(info.tensors_sha256) == 64
