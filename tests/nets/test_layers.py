"""The U-Net's layers, checked against direct formulas, torch's own attention and diffusers' timestep embedding."""

import math

import torch
import torch.nn.functional as F
from torch import nn

from minidiff.nets.layers import (
    CrossAttention,
    Downsample,
    ResBlock,
    SelfAttention,
    Upsample,
    attention,
    timestep_embedding,
)

# --- timestep embedding -------------------------------------------------------------------------------------------

def test_timestep_embedding_matches_the_formula_and_its_properties():
    t = torch.tensor([0, 1, 2, 10, 500, 999])
    dim = 32
    e = timestep_embedding(t, dim)
    assert e.shape == (6, dim)
    assert e.abs().max() <= 1.0
    # written out element by element: dim i < dim/2 is sin(t * 10000^(-i / (dim/2))), dim i + dim/2 the cosine
    for b, step in enumerate(t.tolist()):
        for i in range(dim // 2):
            angle = step * 10000 ** (-i / (dim // 2))
            assert math.isclose(e[b, i].item(), math.sin(angle), abs_tol=1e-4)
            assert math.isclose(e[b, i + dim // 2].item(), math.cos(angle), abs_tol=1e-4)
    # distinct steps get distinct embeddings
    distances = torch.cdist(e, e) + torch.eye(6) * 10
    assert distances.min() > 0.1
    # different dimensions oscillate at different speeds: over steps 1..100, the first sine changes sign often, the last never
    sweep = timestep_embedding(torch.arange(1, 101), dim)
    sign_changes = (sweep[1:].sign() != sweep[:-1].sign()).sum(dim=0)
    assert sign_changes[0] > 20 and sign_changes[dim // 2 - 1] == 0


def test_timestep_embedding_matches_diffusers():
    from diffusers.models.embeddings import get_timestep_embedding

    t = torch.tensor([0.0, 3.5, 42.0, 999.0])  # fractional steps too
    theirs = get_timestep_embedding(t, 64, flip_sin_to_cos=False, downscale_freq_shift=0)
    torch.testing.assert_close(timestep_embedding(t, 64), theirs)


# --- attention against torch.nn.MultiheadAttention ----------------------------------------------------------------

def test_self_attention_matches_torch_multihead_attention():
    torch.manual_seed(0)
    B, C, H, W, heads = 2, 16, 4, 5, 4
    ours = SelfAttention(C, heads, groups=4)
    reference = nn.MultiheadAttention(C, heads, batch_first=True)
    with torch.no_grad():
        reference.in_proj_weight.copy_(ours.to_qkv.weight[:, :, 0, 0])  # our 1x1 conv (out, in, 1, 1) is a Linear
        reference.in_proj_bias.copy_(ours.to_qkv.bias)
        reference.out_proj.weight.copy_(ours.to_out.weight[:, :, 0, 0])
        reference.out_proj.bias.copy_(ours.to_out.bias)
    x = torch.randn(B, C, H, W)
    tokens = ours.norm(x).flatten(2).transpose(1, 2)  # (B, H*W, C)
    expected = x + reference(tokens, tokens, tokens, need_weights=False)[0].transpose(1, 2).reshape(B, C, H, W)
    torch.testing.assert_close(ours(x), expected, atol=1e-5, rtol=1e-5)


def brute_force_attention(q, k, v, mask):
    """One query at a time, in float64: out[b, h, i] = sum_j w_j v[b, h, j], w = softmax over the allowed keys of
    q_i . k_j / sqrt(d)."""
    B, heads, N, d = q.shape
    out = torch.zeros(B, heads, N, d, dtype=torch.float64)
    for b in range(B):
        allowed = mask[b].nonzero().flatten()
        for h in range(heads):
            for i in range(N):
                scores = torch.stack([q[b, h, i].double() @ k[b, h, j].double() / math.sqrt(d) for j in allowed])
                weights = torch.exp(scores - scores.max())
                weights = weights / weights.sum()
                out[b, h, i] = (weights[:, None] * v[b, h, allowed].double()).sum(0)
    return out


def test_attention_matches_a_brute_force_softmax_and_torchs_fused_kernel_in_values_and_gradients():
    torch.manual_seed(0)
    B, heads, N, L, d = 3, 2, 7, 5, 4
    q, k, v = torch.randn(B, heads, N, d), torch.randn(B, heads, L, d), torch.randn(B, heads, L, d)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False], [False, True, True, False, True]])
    torch.testing.assert_close(attention(q, k, v, mask).double(), brute_force_attention(q, k, v, mask),
                               atol=1e-6, rtol=1e-6)
    every_key = torch.ones(B, L, dtype=torch.bool)
    torch.testing.assert_close(attention(q, k, v).double(), brute_force_attention(q, k, v, every_key), atol=1e-6, rtol=1e-6)

    ours = [t.clone().requires_grad_() for t in (q, k, v)]
    fused = [t.clone().requires_grad_() for t in (q, k, v)]
    grad = torch.randn(B, heads, N, d)
    attention(*ours, mask).backward(grad)
    F.scaled_dot_product_attention(*fused, attn_mask=mask[:, None, None, :]).backward(grad)
    for a, b in zip(ours, fused):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-5)


def test_attention_gives_padding_keys_no_weight():
    torch.manual_seed(1)
    q, k, v = torch.randn(2, 2, 6, 4), torch.randn(2, 2, 5, 4), torch.randn(2, 2, 5, 4)
    mask = torch.tensor([[True, True, True, False, False], [True, False, True, True, False]])
    changed_k, changed_v = k.clone(), v.clone()
    changed_k[~mask[:, None, :, None].expand_as(k)] = 100.0  # what a padding key or value holds must not matter
    changed_v[~mask[:, None, :, None].expand_as(v)] = -100.0
    torch.testing.assert_close(attention(q, changed_k, changed_v, mask), attention(q, k, v, mask))
    changed_v[:, :, 0] += 1.0  # a real token's value does matter
    assert not torch.allclose(attention(q, k, changed_v, mask), attention(q, k, v, mask))


def cross_attention_and_reference(C=16, context_dim=12, heads=4):
    torch.manual_seed(0)
    ours = CrossAttention(C, context_dim, heads, groups=4)
    reference = nn.MultiheadAttention(C, heads, kdim=context_dim, vdim=context_dim, batch_first=True)
    to_k, to_v = ours.to_kv.weight.chunk(2)
    with torch.no_grad():
        reference.q_proj_weight.copy_(ours.to_q.weight[:, :, 0, 0])
        reference.k_proj_weight.copy_(to_k)
        reference.v_proj_weight.copy_(to_v)
        reference.in_proj_bias.copy_(torch.cat([ours.to_q.bias, ours.to_kv.bias]))
        reference.out_proj.weight.copy_(ours.to_out.weight[:, :, 0, 0])
        reference.out_proj.bias.copy_(ours.to_out.bias)
    return ours, reference


def test_cross_attention_matches_torch_multihead_attention_with_padding():
    ours, reference = cross_attention_and_reference()
    B, C, H, W, L = 2, 16, 3, 3, 5
    x, context = torch.randn(B, C, H, W), torch.randn(B, L, 12)
    mask = torch.tensor([[True, True, True, False, False], [True, True, True, True, True]])
    out = ours(x, context, mask)
    assert out.shape == (B, C, H, W)
    tokens = ours.norm(x).flatten(2).transpose(1, 2)  # (B, H*W, C)
    attended = reference(tokens, context, context, key_padding_mask=~mask, need_weights=False)[0]  # True = ignore there
    torch.testing.assert_close(out, x + attended.transpose(1, 2).reshape(B, C, H, W), atol=1e-5, rtol=1e-5)


def test_cross_attention_ignores_padded_tokens_but_not_real_ones():
    ours, _ = cross_attention_and_reference()
    x, context = torch.randn(2, 16, 3, 3), torch.randn(2, 5, 12)
    mask = torch.tensor([[True, True, False, False, False], [True, True, True, True, False]])
    changed_padding = torch.where(mask[:, :, None], context, torch.randn_like(context) * 5)
    changed_real = torch.where(mask[:, :, None], torch.randn_like(context), context)
    with torch.no_grad():
        out = ours(x, context, mask)
        torch.testing.assert_close(ours(x, changed_padding, mask), out, atol=1e-6, rtol=0)
        assert not torch.allclose(ours(x, changed_real, mask), out, atol=1e-3)
        assert not torch.allclose(ours(x, context, None), out, atol=1e-3)  # without the mask the padding counts


# --- the small layers ---------------------------------------------------------------------------------------------

def test_res_block_down_and_upsample_shapes():
    torch.manual_seed(0)
    x, embedding = torch.randn(2, 8, 6, 6), torch.randn(2, 32)
    block = ResBlock(8, 16, embed_dim=32, groups=4, dropout=0.0)
    assert isinstance(block.skip, nn.Conv2d) and block.skip.kernel_size == (1, 1)  # channels change: 1x1 skip
    assert block(x, embedding).shape == (2, 16, 6, 6)
    assert isinstance(ResBlock(8, 8, 32, 4, 0.0).skip, nn.Identity)
    assert Downsample(8)(x).shape == (2, 8, 3, 3)
    assert Upsample(8)(x).shape == (2, 8, 12, 12)


def test_res_block_reads_the_embedding_per_sample():
    torch.manual_seed(0)
    block = ResBlock(8, 8, embed_dim=32, groups=4, dropout=0.0)
    x, embedding = torch.randn(1, 8, 5, 5).repeat(2, 1, 1, 1), torch.randn(2, 32)
    out = block(x, embedding)
    assert not torch.allclose(out[0], out[1], atol=1e-3)  # same image, different embeddings
    torch.testing.assert_close(block(x[:1], embedding[:1]), out[:1])  # and no leak between samples
