"""The VAE: shapes, the KL term, the scale factor, checkpoints, resumable training, and the shipped model's PSNR."""

import json

import numpy as np
import pytest
import torch

from minidiff.data.pixels import from_model, to_model
from minidiff.data.shapes import shapes
from minidiff.files.checkpoint import CheckpointError
from minidiff.files.training_state import load_training_state
from minidiff.models import AutoencoderInfo, load_autoencoder, save_autoencoder
from minidiff.nets.autoencoder import Autoencoder, AutoencoderConfig, estimate_scale_factor, kl_divergence, psnr
from minidiff.training.presets import AUTOENCODER_PRESETS
from minidiff.training.vae import train_vae

TINY = AutoencoderConfig(channels=(8, 8, 8), groups=4)


def test_encoder_and_decoder_shapes():
    torch.manual_seed(0)
    autoencoder = Autoencoder(TINY)
    x = torch.rand(5, 3, 32, 32) * 2 - 1
    mean, logvar = autoencoder.encode(x)
    assert mean.shape == logvar.shape == (5, 4, 8, 8)
    assert autoencoder.decode(mean).shape == (5, 3, 32, 32)
    assert autoencoder.encode_mean(x).shape == (5, 4, 8, 8)
    with pytest.raises(ValueError, match=r"images must be \(B, 3, H, W\)"):
        autoencoder.encode(torch.zeros(5, 32, 32, 3))
    with pytest.raises(ValueError, match=r"latents must be \(B, 4, h, w\)"):
        autoencoder.decode(torch.zeros(5, 3, 8, 8))


def test_kl_matches_torch_distributions():
    mean, logvar = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    q = torch.distributions.Normal(mean, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    expected = torch.distributions.kl_divergence(q, p).flatten(1).sum(dim=1)
    assert torch.allclose(kl_divergence(mean, logvar), expected, rtol=1e-5, atol=1e-4)
    assert torch.allclose(kl_divergence(torch.zeros(2, 4, 8, 8), torch.zeros(2, 4, 8, 8)), torch.zeros(2))


def test_sampled_latents_follow_the_encoders_gaussian():
    torch.manual_seed(0)
    autoencoder = Autoencoder(TINY)
    x = (torch.rand(1, 3, 32, 32) * 2 - 1).expand(4000, 3, 32, 32)
    with torch.no_grad():
        mean, logvar = autoencoder.encode(x[:1])
        z = autoencoder.encode_sample(x, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(z.mean(dim=0), mean[0], atol=0.1)
    assert torch.allclose(z.std(dim=0), torch.exp(0.5 * logvar[0]), rtol=0.1)


def test_psnr_agrees_with_the_uint8_definition():
    images = shapes(4, "train", seed=3)[0]
    noisy = np.clip(images.astype(int) + np.random.default_rng(0).integers(-9, 10, images.shape), 0, 255)
    mse = ((images.astype(float) - noisy) ** 2).reshape(4, -1).mean(axis=1)
    expected = 10 * np.log10(255.0 ** 2 / mse)
    got = psnr(to_model(noisy.astype(np.uint8)), to_model(images)).numpy()
    assert np.allclose(got, expected, atol=1e-3)


def test_the_scale_factor_makes_latents_of_unseen_images_unit_variance():
    torch.manual_seed(0)
    autoencoder = Autoencoder(TINY).eval()
    s = estimate_scale_factor(autoencoder, to_model(shapes(400, "train", seed=0)[0]))
    with torch.no_grad():
        other = autoencoder.encode_mean(to_model(shapes(400, "train", seed=1)[0])) * s
    assert abs(other.std().item() - 1.0) < 0.05


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


def test_a_diffusion_checkpoint_is_not_an_autoencoder():
    with pytest.raises(CheckpointError, match="not an autoencoder checkpoint"):
        load_autoencoder("mnist")


def small_checkpoint(stem, config=TINY):
    torch.manual_seed(0)
    info = AutoencoderInfo(config=config.to_dict(), scale_factor=1.0, command="test", seed=0, device="cpu",
                           training_minutes=0.0, step=0, data={}, metrics={})
    save_autoencoder(stem, Autoencoder(config), info)
    return info


def test_save_and_load_round_trip(tmp_path):
    info = small_checkpoint(tmp_path / "vae")
    model, loaded = load_autoencoder(tmp_path / "vae.json")
    torch.manual_seed(0)
    original = Autoencoder(TINY)
    assert all(torch.equal(value, model.state_dict()[name]) for name, value in original.state_dict().items())
    assert AutoencoderConfig.from_dict(loaded.config) == TINY and loaded.command == info.command


def test_a_corrupt_or_mismatched_checkpoint_fails_clearly(tmp_path):
    small_checkpoint(tmp_path / "vae")
    data = bytearray((tmp_path / "vae.safetensors").read_bytes())
    data[-1] ^= 1
    (tmp_path / "vae.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match the sha256"):
        load_autoencoder(tmp_path / "vae")
    small_checkpoint(tmp_path / "wide", AutoencoderConfig(channels=(8, 16, 16), groups=4))
    small_checkpoint(tmp_path / "narrow")
    meta = json.loads((tmp_path / "narrow.json").read_text())
    (tmp_path / "wide.json").write_text(json.dumps({**meta, "tensors_sha256": json.loads(
        (tmp_path / "wide.json").read_text())["tensors_sha256"]}))  # narrow's config, wide's weights
    with pytest.raises(CheckpointError, match="does not fit the config"):
        load_autoencoder(tmp_path / "wide")


def test_the_shipped_vae_reconstructs_heldout_shapes_above_32_db():
    autoencoder, info = load_autoencoder("shapes_vae")
    images = to_model(shapes(64, "heldout", seed=123)[0])  # unseen colour/shape pairs, unseen seed
    with torch.no_grad():
        reconstruction = autoencoder.decode(autoencoder.encode_mean(images)).clamp(-1, 1)
    assert psnr(reconstruction, images).mean().item() >= 32.0
    assert from_model(reconstruction).shape == (64, 32, 32, 3)
    assert info.metrics["psnr_heldout_db"] >= 32.0
