"""Attention maps: the weights the recorder reads are the ones the cross-attention layer uses."""

import pytest
import torch

from minidiff.nets.attention_maps import CrossAttentionRecorder, attention_weights
from minidiff.nets.layers import CrossAttention


def test_recorded_weights_are_the_ones_the_layer_uses():
    torch.manual_seed(0)
    layer = CrossAttention(channels=8, context_dim=6, heads=1, groups=2).eval()
    x, context = torch.randn(2, 8, 4, 4), torch.randn(2, 5, 6)
    mask = torch.tensor([[True, True, True, False, False], [True] * 5])
    with torch.no_grad():
        weights = attention_weights(layer, x, context, mask).flatten(2).transpose(1, 2)  # (B, L, H, W) -> (B, HW, L)
        values = layer.to_kv(context).chunk(2, dim=2)[1]  # (B, L, C)
        mixed = (weights @ values).transpose(1, 2).reshape(2, 8, 4, 4)  # (B, HW, C) -> (B, C, H, W)
        assert torch.allclose(layer(x, context, mask), x + layer.to_out(mixed), atol=1e-5)


def test_the_recorder_refuses_a_model_without_cross_attention():
    with pytest.raises(ValueError, match="no cross-attention"):
        CrossAttentionRecorder(torch.nn.Linear(2, 2))
