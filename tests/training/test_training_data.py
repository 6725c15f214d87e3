"""The data a training run reads: latents encoded once, cached, and read back."""

import torch

from minidiff.training.data import encoded_shapes


def test_latents_are_encoded_once_and_read_back_from_the_cache(tiny_vae, tmp_path):
    z0, tokens = encoded_shapes(str(tiny_vae), 32, seed=0, cache_dir=tmp_path)
    assert z0.shape == (32, 4, 8, 8) and tokens.shape == (32, 5)
    cached = list(tmp_path.glob("latents_*.safetensors"))
    assert len(cached) == 1
    again, again_tokens = encoded_shapes(str(tiny_vae), 32, seed=0, cache_dir=tmp_path)
    assert torch.equal(z0, again) and torch.equal(tokens, again_tokens)
    without_cache, _ = encoded_shapes(str(tiny_vae), 32, seed=0)
    assert torch.allclose(z0, without_cache)
