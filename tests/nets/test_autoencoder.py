"""The VAE: shapes, the KL term, sampled latents, PSNR, the scale factor, and encoding and decoding with it.
(Checkpoints and the shipped model: tests/test_models.py; training: tests/training/test_vae.py.)"""

import numpy as np
import pytest
import torch
from support.tiny import TINY_AUTOENCODER

from minidiff.data.pixels import to_model
from minidiff.data.shapes import shapes
from minidiff.models import load_autoencoder
from minidiff.nets.autoencoder import (
    Autoencoder,
    decode_latents,
    encode_images,
    estimate_scale_factor,
    kl_divergence,
    psnr,
)


def test_encoder_and_decoder_shapes():
    torch.manual_seed(0)
    autoencoder = Autoencoder(TINY_AUTOENCODER)
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
    autoencoder = Autoencoder(TINY_AUTOENCODER)
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
    autoencoder = Autoencoder(TINY_AUTOENCODER).eval()
    scale_factor = estimate_scale_factor(autoencoder, to_model(shapes(400, "train", seed=0)[0]))
    with torch.no_grad():
        other = autoencoder.encode_mean(to_model(shapes(400, "train", seed=1)[0])) * scale_factor
    assert abs(other.std().item() - 1.0) < 0.05


def test_encoding_scales_and_decoding_unscales(tiny_vae):
    autoencoder, info = load_autoencoder(tiny_vae)
    images = torch.rand(6, 3, 32, 32) * 2 - 1
    z0 = encode_images(autoencoder, images, info.scale_factor)
    with torch.no_grad():
        assert torch.allclose(z0, autoencoder.encode_mean(images) * info.scale_factor)
        assert torch.allclose(decode_latents(autoencoder, z0, info.scale_factor),
                              autoencoder.decode(z0 / info.scale_factor).clamp(-1, 1), atol=1e-6)
