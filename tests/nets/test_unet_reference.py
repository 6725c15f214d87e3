"""The U-Net against a plain reference written out here: the same weights through textbook functional ops.

The package's layers are written for speed (channels-last layout, AdaGN folded into GroupNorm's affine map, attention
projections as matrix products on the token layout); this reference is written for reading: contiguous (B, C, H, W)
tensors, GroupNorm then scale and shift, softmax(Q K^T / sqrt(d)) V spelt out. The two must agree to 1e-5 in their
outputs and in every gradient, for the class-conditional U-Net of the benchmark and the text U-Net of shapes_text.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from minidiff.nets.unet import UNet, UNetConfig
from minidiff.training.presets import shapes_text_config


def reference_resblock(block, x, embedding):
    """norm -> SiLU -> conv -> norm -> (1 + scale) * . + shift -> SiLU -> conv, + skip (eval: no dropout)."""
    groups = block.norm1.num_groups
    h = F.group_norm(x, groups, block.norm1.weight, block.norm1.bias, block.norm1.eps)
    h = F.conv2d(F.silu(h), block.conv1.weight, block.conv1.bias, padding=1)
    h = F.group_norm(h, groups, block.norm2.weight, block.norm2.bias, block.norm2.eps)
    scale_shift = F.linear(F.silu(embedding), block.embed_to_scale_shift.weight, block.embed_to_scale_shift.bias)
    scale, shift = scale_shift.chunk(2, dim=1)  # 2 x (B, C)
    h = h * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
    h = F.conv2d(F.silu(h), block.conv2.weight, block.conv2.bias, padding=1)
    skip = x if isinstance(block.skip, nn.Identity) else F.conv2d(x, block.skip.weight, block.skip.bias)
    return skip + h


def reference_attention(q, k, v, heads, attend=None):
    """Tokens q (B, N, C), k and v (B, L, C) -> (B, N, C): softmax(Q K^T / sqrt(d) + mask) V for each head."""
    B, N, C = q.shape
    d = C // heads
    q, k, v = (part.reshape(B, -1, heads, d).permute(0, 2, 1, 3) for part in (q, k, v))  # (B, heads, tokens, d)
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)  # (B, heads, N, L)
    if attend is not None:
        scores = scores.masked_fill(~attend[:, None, None, :], float("-inf"))
    out = scores.softmax(dim=-1) @ v  # (B, heads, N, d)
    return out.permute(0, 2, 1, 3).reshape(B, N, C)


def tokens_of(x):
    """(B, C, H, W) -> (B, H*W, C)."""
    return x.flatten(2).transpose(1, 2)


def reference_self_attention(layer, x):
    B, C, H, W = x.shape
    h = F.group_norm(x, layer.norm.num_groups, layer.norm.weight, layer.norm.bias, layer.norm.eps)
    qkv = F.conv2d(h, layer.to_qkv.weight, layer.to_qkv.bias)  # 1x1 conv: (B, 3C, H, W)
    q, k, v = tokens_of(qkv).chunk(3, dim=2)
    out = reference_attention(q, k, v, layer.heads).transpose(1, 2).reshape(B, C, H, W)
    return x + F.conv2d(out, layer.to_out.weight, layer.to_out.bias)


def reference_cross_attention(layer, x, context, context_mask):
    B, C, H, W = x.shape
    h = F.group_norm(x, layer.norm.num_groups, layer.norm.weight, layer.norm.bias, layer.norm.eps)
    q = tokens_of(F.conv2d(h, layer.to_q.weight, layer.to_q.bias))
    k, v = F.linear(context, layer.to_kv.weight, layer.to_kv.bias).chunk(2, dim=2)
    out = reference_attention(q, k, v, layer.heads, context_mask).transpose(1, 2).reshape(B, C, H, W)
    return x + F.conv2d(out, layer.to_out.weight, layer.to_out.bias)


def reference_block(block, h, embedding, context, context_mask):
    h = reference_resblock(block.res, h, embedding)
    if block.attention is not None:
        h = reference_self_attention(block.attention, h)
    if block.cross_attention is not None:
        h = reference_cross_attention(block.cross_attention, h, context, context_mask)
    return h


def reference_unet(model: UNet, x_t, t, class_labels=None, context=None, context_mask=None):
    """The U-Net's forward pass walked by hand over its modules' weights."""
    embedding = model.embed(t, class_labels)
    h = F.conv2d(x_t, model.conv_in.weight, model.conv_in.bias, padding=1)
    skips = [h]
    for level in range(model.config.levels):
        for block in model.down[level]:
            h = reference_block(block, h, embedding, context, context_mask)
            skips.append(h)
        if level < model.config.levels - 1:
            conv = model.downsample[level].conv
            h = F.conv2d(h, conv.weight, conv.bias, stride=2, padding=1)
            skips.append(h)
    h = reference_block(model.middle_attention_block, h, embedding, context, context_mask)
    h = reference_resblock(model.middle_res_block, h, embedding)
    for level in reversed(range(model.config.levels)):
        if level < model.config.levels - 1:
            conv = model.upsample[level].conv
            h = F.conv2d(F.interpolate(h, scale_factor=2.0, mode="nearest"), conv.weight, conv.bias, padding=1)
        for block in model.up[level]:
            h = reference_block(block, torch.cat([h, skips.pop()], dim=1), embedding, context, context_mask)
    h = F.silu(F.group_norm(h, model.norm_out.num_groups, model.norm_out.weight, model.norm_out.bias))
    return F.conv2d(h, model.conv_out.weight, model.conv_out.bias, padding=1)


CASES = {
    "class U-Net of the benchmark": (UNetConfig(in_channels=1, channels=(32, 64, 128), num_classes=10), (1, 28, 28)),
    "text U-Net of shapes_text": (shapes_text_config().unet, (4, 8, 8)),
}


def inputs_for(config: UNetConfig, shape):
    generator = torch.Generator().manual_seed(1)
    B = 2
    conditioning = {}
    if config.num_classes is not None:
        conditioning["class_labels"] = torch.tensor([3, config.num_classes])
    if config.context_dim is not None:
        conditioning["context"] = torch.randn(B, 6, config.context_dim, generator=generator)
        conditioning["context_mask"] = torch.tensor([[True] * 4 + [False] * 2, [True] * 6])
    return torch.randn(B, *shape, generator=generator), torch.tensor([7, 640]), conditioning


@pytest.mark.parametrize("name", CASES)
def test_unet_matches_the_written_out_reference_in_outputs_and_gradients(name):
    config, shape = CASES[name]
    torch.manual_seed(0)
    model = UNet(config).eval()  # eval: dropout off, so both passes see the same function
    x_t, t, conditioning = inputs_for(config, shape)
    target = torch.randn(x_t.shape[0], config.output_channels, *shape[1:], generator=torch.Generator().manual_seed(2))

    results = []
    for forward in (model, lambda *args, **kwargs: reference_unet(model, *args, **kwargs)):
        x = x_t.clone().requires_grad_()
        out = forward(x, t, **conditioning)
        model.zero_grad(set_to_none=True)
        (out * target).sum().backward()  # gradients against a fixed random direction
        grads = {name: p.grad.clone() for name, p in model.named_parameters()}
        results.append((out.detach(), x.grad, grads))

    (out, x_grad, grads), (ref_out, ref_x_grad, ref_grads) = results
    assert out.is_contiguous()
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(x_grad, ref_x_grad, atol=1e-5, rtol=1e-5)
    assert grads.keys() == ref_grads.keys()
    for key in grads:
        scale = ref_grads[key].abs().max().clamp(min=1.0)  # gradients of the big weights sum many terms
        torch.testing.assert_close(grads[key] / scale, ref_grads[key] / scale, atol=1e-5, rtol=1e-5, msg=key)
