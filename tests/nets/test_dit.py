"""The diffusion transformer: patches, positions, adaLN-Zero, cross-attention, each checked against a direct
re-implementation written out here; and it learns (training and sampling through the package: tests/training)."""

import math

import pytest
import torch
import torch.nn.functional as F

from minidiff.nets.dit import DiT, DiTConfig, patchify, position_embedding_2d, unpatchify

TINY = dict(in_channels=4, patch_size=2, dim=16, depth=2, heads=2)


def tiny_dit(seed: int = 0, randomise: bool = False, **overrides) -> DiT:
    """A tiny DiT in eval mode; with `randomise`, every weight redrawn (the zero-initialised ones too), so that every
    path through the network carries a signal."""
    torch.manual_seed(seed)
    model = DiT(DiTConfig(**{**TINY, **overrides})).eval()
    if randomise:
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.copy_(0.3 * torch.randn_like(parameter))
    return model


def conditioning(model: DiT, B: int, L: int = 5) -> dict:
    inputs = {}
    if model.config.num_classes is not None:
        inputs["class_labels"] = torch.arange(B) % (model.config.num_classes + 1)
    if model.config.context_dim is not None:
        inputs["context"] = torch.randn(B, L, model.config.context_dim)
        inputs["context_mask"] = torch.arange(L)[None, :] < torch.arange(1, B + 1)[:, None].clamp(max=L)  # (B, L)
    return inputs


CONFIGS = {
    "latents, text": (dict(context_dim=12), (4, 8, 8)),
    "digits, classes, patch 4": (dict(in_channels=1, patch_size=4, num_classes=10), (1, 28, 28)),
    "rgb, patch 1, 2 output channels, not square": (dict(in_channels=3, patch_size=1, out_channels=2), (3, 6, 10)),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_output_has_the_input_shape_and_reads_t_and_the_condition(name):
    overrides, (C, H, W) = CONFIGS[name]
    model = tiny_dit(randomise=True, **overrides)
    B = 3
    x_t, inputs = torch.randn(B, C, H, W), conditioning(model, B)
    with torch.inference_mode():
        out = model(x_t, torch.tensor([0.0, 500.0, 999.0]), **inputs)
        other_t = model(x_t, torch.tensor([1.0, 200.0, 3.0]), **inputs)
    assert out.shape == (B, model.config.output_channels, H, W) and torch.isfinite(out).all()
    assert not torch.allclose(out, other_t, atol=1e-4)
    if inputs:
        changed = {name: value.flip(0) if name != "context_mask" else value for name, value in inputs.items()}
        with torch.inference_mode():
            assert not torch.allclose(out, model(x_t, torch.tensor([0.0, 500.0, 999.0]), **changed), atol=1e-4)


def test_patchify_cuts_patches_row_by_row_and_unpatchify_undoes_it():
    p, x = 2, torch.randn(2, 3, 6, 4)
    patches = patchify(x, p)  # (2, 3 * 2, 2 * 2 * 3)
    assert patches.shape == (2, 6, 12)
    for n in range(6):
        row, column = divmod(n, 4 // p)
        patch = x[:, :, row * p:(row + 1) * p, column * p:(column + 1) * p]  # (B, C, p, p)
        torch.testing.assert_close(patches[:, n], patch.permute(0, 2, 3, 1).reshape(2, -1), rtol=0, atol=0)
    torch.testing.assert_close(unpatchify(patches, p, 3, 2), x, rtol=0, atol=0)


def test_the_patch_embedding_is_a_stride_p_convolution():
    model = tiny_dit(randomise=True)
    p, C, dim = 2, 4, 16
    x = torch.randn(2, C, 8, 8)
    # the linear map's input is ordered (row, column, channel) within a patch; a conv kernel is (dim, C, p, p)
    kernel = model.patch_embedding.weight.reshape(dim, p, p, C).permute(0, 3, 1, 2)
    by_conv = F.conv2d(x, kernel, model.patch_embedding.bias, stride=p)  # (B, dim, 4, 4)
    torch.testing.assert_close(model.patch_embedding(patchify(x, p)), by_conv.flatten(2).transpose(1, 2))


def test_the_2d_position_embedding_is_the_sinusoids_of_row_and_column():
    h, w, dim = 3, 5, 8
    table = position_embedding_2d(h, w, dim)
    frequencies = [10000 ** (-k / 2) for k in range(2)]  # dim/2 = 4 per axis: 2 sines, 2 cosines
    for n in range(h * w):
        i, j = divmod(n, w)
        expected = ([math.sin(i * f) for f in frequencies] + [math.cos(i * f) for f in frequencies]
                    + [math.sin(j * f) for f in frequencies] + [math.cos(j * f) for f in frequencies])
        torch.testing.assert_close(table[n], torch.tensor(expected), atol=1e-6, rtol=0)
    assert len({tuple(row.tolist()) for row in table}) == h * w  # every position told apart


def test_adaln_zero_makes_every_block_the_identity_and_the_output_the_final_layers():
    model = tiny_dit(num_classes=3, context_dim=12)
    x_t, t = torch.randn(2, 4, 8, 8), torch.tensor([3.0, 700.0])
    inputs = conditioning(model, 2)
    with torch.no_grad():  # a non-zero last layer, so that the output shows what reached it
        for layer in (model.modulation_out, model.to_patches):
            layer.weight.normal_()
            layer.bias.normal_()
        c = model.embed(t, inputs["class_labels"], inputs["context"], inputs["context_mask"])
        tokens = model.patch_embedding(patchify(x_t, 2)) + position_embedding_2d(4, 4, 16)
        for block in model.blocks:
            torch.testing.assert_close(block(tokens, c, inputs["context"], inputs["context_mask"]), tokens,
                                       rtol=0, atol=0)
        shift, scale = model.modulation_out(F.silu(c)).chunk(2, dim=1)
        normed = F.layer_norm(tokens, (16,), eps=1e-6)
        expected = unpatchify(model.to_patches(normed * (1 + scale[:, None]) + shift[:, None]), 2, 4, 4)
        torch.testing.assert_close(model(x_t, t, **inputs), expected)
    assert tiny_dit(context_dim=12)(x_t, t, **conditioning(tiny_dit(context_dim=12), 2)).abs().max() == 0


def reference_block(block, x, c, context, mask):
    """One DiT block written out in float64 from its weights: LayerNorm by mean and variance, attention by an
    explicit softmax, adaLN-Zero's shift, scale and gate, cross-attention with a pre-LN."""
    def linear(layer, a):
        return a @ layer.weight.double().T + layer.bias.double()

    def attention(layer, queries, keys_from, heads, allowed=None):
        q = linear(layer.to_q, queries)
        k, v = linear(layer.to_kv, keys_from).chunk(2, dim=-1)
        B, N, D = q.shape
        d = D // heads
        out = torch.zeros_like(q)
        for head in range(heads):
            part = slice(head * d, (head + 1) * d)
            scores = q[..., part] @ k[..., part].transpose(1, 2) / math.sqrt(d)  # (B, N, L)
            if allowed is not None:
                scores = scores.masked_fill(~allowed[:, None, :], float("-inf"))
            out[..., part] = scores.softmax(dim=-1) @ v[..., part]
        return linear(layer.to_out, out)

    def layer_norm(a, gain=None, bias=None):
        normed = (a - a.mean(-1, keepdim=True)) / torch.sqrt(a.var(-1, unbiased=False, keepdim=True) + 1e-6)
        return normed if gain is None else normed * gain.double() + bias.double()

    x, c, context = x.double(), c.double(), context.double()
    heads = block.attention.heads
    shift1, scale1, gate1, shift2, scale2, gate2 = linear(block.modulation, c * torch.sigmoid(c)).chunk(6, dim=1)
    h = layer_norm(x) * (1 + scale1[:, None]) + shift1[:, None]
    x = x + gate1[:, None] * attention(block.attention, h, h, heads)
    # the cross-attention's LayerNorm has eps 1e-5 (PyTorch's default)
    normed = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-5)
    normed = normed * block.cross_norm.weight.double() + block.cross_norm.bias.double()
    x = x + attention(block.cross_attention, normed, context, heads, mask)
    h = layer_norm(x) * (1 + scale2[:, None]) + shift2[:, None]
    up = linear(block.mlp[0], h)
    gelu = 0.5 * up * (1 + torch.tanh(math.sqrt(2 / math.pi) * (up + 0.044715 * up ** 3)))
    return x + gate2[:, None] * linear(block.mlp[2], gelu)


def test_a_block_agrees_with_a_direct_re_implementation():
    model = tiny_dit(randomise=True, context_dim=12)
    block = model.blocks[0]
    x, c, context = torch.randn(3, 16, 16), torch.randn(3, 16), torch.randn(3, 5, 12)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]).bool()
    with torch.no_grad():
        ours = block(x, c, context, mask)
    expected = reference_block(block, x, c, context, mask)
    torch.testing.assert_close(ours.double(), expected, atol=1e-4, rtol=1e-4)
    assert (ours - x).abs().max() > 0.1  # the block did something: the comparison is not of two identities


def test_padded_context_tokens_change_nothing():
    model = tiny_dit(randomise=True, context_dim=12)
    x_t, t = torch.randn(2, 4, 8, 8), torch.tensor([10.0, 600.0])
    context = torch.randn(2, 4, 12)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]]).bool()
    other_padding = torch.where(mask[:, :, None], context, torch.randn(2, 4, 12) * 100)
    longer = torch.cat([context, torch.randn(2, 3, 12)], dim=1)  # three more padding tokens
    longer_mask = torch.cat([mask, torch.zeros(2, 3, dtype=torch.bool)], dim=1)
    with torch.inference_mode():
        out = model(x_t, t, context=context, context_mask=mask)
        torch.testing.assert_close(model(x_t, t, context=other_padding, context_mask=mask), out)
        torch.testing.assert_close(model(x_t, t, context=longer, context_mask=longer_mask), out)
        real_changed = context.clone()
        real_changed[:, 0] += 1.0
        assert not torch.allclose(model(x_t, t, context=real_changed, context_mask=mask), out, atol=1e-4)


def test_missing_class_labels_mean_the_null_class():
    model = tiny_dit(randomise=True, in_channels=1, num_classes=10)
    x_t, t = torch.randn(2, 1, 8, 8), torch.tensor([5.0, 50.0])
    with torch.inference_mode():
        torch.testing.assert_close(model(x_t, t), model(x_t, t, class_labels=torch.full((2,), 10)))


def test_it_overfits_one_batch():
    torch.manual_seed(0)
    model = DiT(DiTConfig(**{**TINY, "dim": 32, "num_classes": 2}))
    x0, labels = torch.randn(8, 4, 8, 8), torch.tensor([0, 1] * 4)
    t = torch.linspace(0, 999, 8)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(200):
        loss = (model(torch.zeros_like(x0), t, labels) - x0).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > 0.9 and losses[-1] < 0.05 * losses[0], (losses[0], losses[-1])


@pytest.mark.parametrize("overrides, message", [
    (dict(dim=18), "multiple of 4"),
    (dict(heads=3), "cannot be split into 3 attention heads"),
    (dict(patch_size=0), "at least 1"),
    (dict(time_scale=0.0), "time_scale"),
])
def test_bad_configs_are_refused_by_name(overrides, message):
    with pytest.raises(ValueError, match=message):
        DiTConfig(**{**TINY, **overrides})


def test_bad_inputs_are_refused_with_what_to_pass():
    model = tiny_dit(context_dim=12)
    with pytest.raises(ValueError, match="divisible by patch_size = 2"):
        model(torch.randn(1, 4, 7, 8), torch.zeros(1), context=torch.randn(1, 2, 12))
    with pytest.raises(ValueError, match=r"context must be \(B=1, L, 12\)"):
        model(torch.randn(1, 4, 8, 8), torch.zeros(1))
    with pytest.raises(ValueError, match="unknown DiTConfig fields"):
        DiTConfig.from_dict({**TINY, "channels": [8]})
    assert DiTConfig.from_dict(DiTConfig(**TINY).to_dict()) == DiTConfig(**TINY)


def test_the_attention_maps_of_a_dit_are_the_weights_its_cross_attention_uses():
    from minidiff.nets.attention_maps import token_attention_weights

    layer = tiny_dit(randomise=True, context_dim=12).blocks[1].cross_attention
    x, context = torch.randn(2, 16, 16), torch.randn(2, 5, 12)
    mask = torch.tensor([[True, True, True, False, False], [True] * 5])
    with torch.no_grad():
        maps = token_attention_weights(layer, x, context, mask)  # (B, L, 4, 4), averaged over the 2 heads
        weights = maps.flatten(2).transpose(1, 2)  # (B, N, L)
        assert torch.allclose(weights.sum(dim=2), torch.ones(2, 16)) and (weights[0, :, 3:] == 0).all()
        one_head = tiny_dit(randomise=True, context_dim=12, heads=1).blocks[0].cross_attention
        single = token_attention_weights(one_head, x, context, mask).flatten(2).transpose(1, 2)  # (B, N, L)
        values = one_head.to_kv(context).chunk(2, dim=2)[1]  # (B, L, dim)
        torch.testing.assert_close(one_head(x, context, mask), one_head.to_out(single @ values))
    assert maps.shape == (2, 5, 4, 4)
