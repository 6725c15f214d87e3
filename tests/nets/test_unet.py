"""The U-Net, checked against direct formulas and diffusers' UNet2DModel (its layers: test_layers.py)."""

import json

import pytest
import torch
import torch.nn.functional as F
from support.tiny import tiny_unet, tiny_unet_config
from torch import nn

from minidiff.data.digits import mnist5k
from minidiff.data.pixels import to_model
from minidiff.diffusion.forward import q_sample
from minidiff.diffusion.schedule import make_schedule
from minidiff.nets.unet import UNet, UNetConfig, count_parameters, shapes_per_level

# --- the U-Net ----------------------------------------------------------------------------------------------------

CONFIGS = {
    "mnist, class-conditional": (dict(in_channels=1, num_classes=10), (1, 28, 28)),
    "latents 4x8x8, cross-attention": (dict(in_channels=4, context_dim=12), (4, 8, 8)),
    "rgb 32x32, unconditional": (dict(in_channels=3, channels=(8, 16, 16), attention_levels=(False, True, True)), (3, 32, 32)),
    "grey 16x16, 2 output channels": (dict(out_channels=2), (1, 16, 16)),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_output_shape_and_not_degenerate_at_init(name):
    overrides, (C, H, W) = CONFIGS[name]
    model = tiny_unet(**overrides)
    B = 3
    conditioning = {}
    if model.config.num_classes is not None:
        conditioning["class_labels"] = torch.tensor([0, 3, 10])
    if model.config.context_dim is not None:
        conditioning["context"] = torch.randn(B, 5, model.config.context_dim)
        conditioning["context_mask"] = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]).bool()
    x_t, t = torch.randn(B, C, H, W), torch.tensor([0, 500, 999])
    with torch.inference_mode():
        out = model(x_t, t, **conditioning)
        out_other_t = model(x_t, torch.tensor([1, 200, 3]), **conditioning)
    assert out.shape == (B, model.config.output_channels, H, W)
    assert torch.isfinite(out).all()
    assert out.std() > 0.01 and (out.amax(dim=(2, 3)) - out.amin(dim=(2, 3)) > 0.01).all()  # not constant
    assert not torch.allclose(out, out_other_t, atol=1e-4)  # t is read


def test_missing_class_labels_mean_the_null_class():
    model = tiny_unet(num_classes=10)
    x_t, t = torch.randn(4, 1, 16, 16), torch.tensor([1, 10, 100, 900])
    with torch.inference_mode():
        implicit = model(x_t, t)
        explicit = model(x_t, t, class_labels=torch.full((4,), 10))
        digit = model(x_t, t, class_labels=torch.full((4,), 3))
    torch.testing.assert_close(implicit, explicit)
    assert not torch.allclose(implicit, digit, atol=1e-4)


def test_padded_context_tokens_change_nothing_in_the_unet():
    model = tiny_unet(in_channels=4, context_dim=12)
    x_t, t = torch.randn(2, 4, 8, 8), torch.tensor([5, 50])
    context = torch.randn(2, 6, 12)
    mask = torch.tensor([[True, True, True, False, False, False], [True] * 5 + [False]])
    changed_padding = torch.where(mask[:, :, None], context, torch.randn_like(context) * 3)
    changed_real = torch.where(mask[:, :, None], torch.randn_like(context), context)
    with torch.inference_mode():
        out = model(x_t, t, context=context, context_mask=mask)
        torch.testing.assert_close(model(x_t, t, context=changed_padding, context_mask=mask), out, atol=1e-5, rtol=0)
        assert not torch.allclose(model(x_t, t, context=changed_real, context_mask=mask), out, atol=1e-4)


def diffusers_twin(config: UNetConfig):
    """diffusers' UNet2DModel with our layout: AdaGN ("scale_shift"), [sin, cos] embedding, norm before every attention."""
    from diffusers import UNet2DModel

    return UNet2DModel(
        in_channels=config.in_channels, out_channels=config.output_channels, block_out_channels=config.channels,
        layers_per_block=config.blocks_per_level,
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in config.attention_levels),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(config.attention_levels)),
        attention_head_dim=config.channels[-1] // config.heads, norm_num_groups=config.groups,
        attn_norm_num_groups=config.groups, resnet_time_scale_shift="scale_shift", time_embedding_dim=config.embed_dim,
        flip_sin_to_cos=False, freq_shift=0, num_class_embeds=config.num_classes + 1, dropout=config.dropout)


def our_weights_under_diffusers_names(model: UNet) -> dict:
    """Our state, renamed to diffusers' UNet2DModel keys: q, k, v split out of our fused to_qkv, and our 1x1-conv
    projections (out, in, 1, 1) as diffusers' Linear weights (out, in)."""
    weights = {}

    def put(name, module):
        weights[f"{name}.weight"], weights[f"{name}.bias"] = module.weight, module.bias

    def put_res(name, block):
        for ours, theirs in [("norm1", "norm1"), ("conv1", "conv1"), ("embed_to_scale_shift", "time_emb_proj"),
                             ("norm2", "norm2"), ("conv2", "conv2"), ("skip", "conv_shortcut")]:
            if not isinstance(getattr(block, ours), nn.Identity):
                put(f"{name}.{theirs}", getattr(block, ours))

    def put_attention(name, attention):
        put(f"{name}.group_norm", attention.norm)
        for part, w, b in zip("qkv", attention.to_qkv.weight[:, :, 0, 0].chunk(3), attention.to_qkv.bias.chunk(3)):
            weights[f"{name}.to_{part}.weight"], weights[f"{name}.to_{part}.bias"] = w, b
        weights[f"{name}.to_out.0.weight"] = attention.to_out.weight[:, :, 0, 0]
        weights[f"{name}.to_out.0.bias"] = attention.to_out.bias

    put("conv_in", model.conv_in)
    put("time_embedding.linear_1", model.time_mlp[0])
    put("time_embedding.linear_2", model.time_mlp[2])
    weights["class_embedding.weight"] = model.class_embedding.weight
    levels = model.config.levels
    for level in range(levels):
        for i, block in enumerate(model.down[level]):
            put_res(f"down_blocks.{level}.resnets.{i}", block.res)
            if block.attention is not None:
                put_attention(f"down_blocks.{level}.attentions.{i}", block.attention)
        if level < levels - 1:
            put(f"down_blocks.{level}.downsamplers.0.conv", model.downsample[level].conv)
        k = levels - 1 - level  # diffusers numbers the way up from the bottom
        for i, block in enumerate(model.up[level]):
            put_res(f"up_blocks.{k}.resnets.{i}", block.res)
            if block.attention is not None:
                put_attention(f"up_blocks.{k}.attentions.{i}", block.attention)
        if level > 0:
            put(f"up_blocks.{k}.upsamplers.0.conv", model.upsample[level - 1].conv)
    put_res("mid_block.resnets.0", model.middle_attention_block.res)
    put_attention("mid_block.attentions.0", model.middle_attention_block.attention)
    put_res("mid_block.resnets.1", model.middle_res_block)
    put("conv_norm_out", model.norm_out)
    put("conv_out", model.conv_out)
    return weights


def test_same_network_as_diffusers_unet2d_with_the_same_weights():
    model = tiny_unet(channels=(8, 16, 16), blocks_per_level=2, attention_levels=(False, True, True), num_classes=10)
    theirs = diffusers_twin(model.config).eval()
    assert count_parameters(theirs) == count_parameters(model)
    theirs.load_state_dict(our_weights_under_diffusers_names(model), strict=True)
    x_t, t, labels = torch.randn(3, 1, 28, 28), torch.tensor([0, 250, 999]), torch.tensor([1, 7, 10])
    with torch.inference_mode():
        torch.testing.assert_close(model(x_t, t, labels), theirs(x_t, t, labels).sample, atol=1e-4, rtol=1e-4)


def test_shapes_per_level_walk_down_and_up():
    model = tiny_unet(channels=(8, 16, 32), attention_levels=(False, False, True))
    rows = shapes_per_level(model, torch.randn(2, 1, 28, 28), torch.tensor([3, 4]))
    names = [name for name, _, _ in rows]
    assert names[0] == "conv_in" and names[-1] == "conv_out"
    assert ("downsample.0", (2, 8, 28, 28), (2, 8, 14, 14)) in rows
    assert ("middle_res_block", (2, 32, 7, 7), (2, 32, 7, 7)) in rows
    assert ("upsample.0", (2, 16, 14, 14), (2, 16, 28, 28)) in rows
    sizes = [out[-1] for _, _, out in rows]
    assert sizes.index(7) < len(sizes) - sizes[::-1].index(14)  # down to 7, back up through 14
    assert len([n for n in names if n.startswith("up.")]) == 3 * (1 + 1)  # one extra block per level on the way up


def test_overfits_one_batch():
    """Eight digits, fixed t and noise: the eps loss must fall at least 10x in 40 Adam steps."""
    images, labels = mnist5k()
    x0, class_labels = to_model(images[:8]), torch.from_numpy(labels[:8])
    generator = torch.Generator().manual_seed(0)
    eps = torch.randn(x0.shape, generator=generator)
    t = torch.linspace(50, 950, 8).long()
    x_t = q_sample(make_schedule("linear", 1000), x0, t, eps).float()
    torch.manual_seed(0)
    model = UNet(tiny_unet_config(groups=8, num_classes=10, dropout=0.0))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = F.mse_loss(model(x_t, t, class_labels), eps)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10, f"loss went {losses[0]:.3f} -> {losses[-1]:.3f}"


# --- config and errors --------------------------------------------------------------------------------------------

def test_time_scale_multiplies_t_before_the_embedding():
    # a flow model's t in [0, 1] read with time_scale 1000 is the same network input as the step 1000 t
    torch.manual_seed(0)
    flow_time = tiny_unet(num_classes=10, time_scale=1000.0)
    steps = tiny_unet(num_classes=10)
    steps.load_state_dict(flow_time.state_dict())
    x_t = torch.randn(2, 1, 16, 16)
    with torch.inference_mode():
        scaled = flow_time(x_t, torch.tensor([0.25, 0.9]), class_labels=torch.tensor([1, 2]))
        direct = steps(x_t, torch.tensor([250.0, 900.0]), class_labels=torch.tensor([1, 2]))
        unscaled = steps(x_t, torch.tensor([0.25, 0.9]), class_labels=torch.tensor([1, 2]))
    torch.testing.assert_close(scaled, direct)
    assert not torch.allclose(scaled, unscaled, atol=1e-4)


def test_config_json_round_trip_keeps_tuples():
    config = UNetConfig(in_channels=4, channels=(16, 32), attention_levels=(True, True), heads=2, num_classes=5,
                        context_dim=24, time_embed_dim=48)
    back = UNetConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert back == config
    assert isinstance(back.channels, tuple) and isinstance(back.attention_levels, tuple)
    with pytest.raises(ValueError, match="unknown UNetConfig fields"):
        UNetConfig.from_dict({**config.to_dict(), "chanels": (1, 2)})
    with pytest.raises(ValueError, match="diffusion setting now .* scripts/convert_checkpoints.py"):
        UNetConfig.from_dict({**config.to_dict(), "prediction": "v"})  # a checkpoint from before the split


@pytest.mark.parametrize("bad, message", [
    (dict(attention_levels=(False, True)), "one True/False per level"),
    (dict(channels=(32, 60, 128)), "GroupNorm groups"),
    (dict(heads=3), "attention heads"),
    (dict(blocks_per_level=0), "blocks_per_level"),
    (dict(dropout=1.0), "dropout is a probability"),
    (dict(channels=(9, 18), attention_levels=(False, True), groups=3, heads=3), "must be even"),
    (dict(time_scale=0.0), "time_scale .* must be positive"),
])
def test_bad_config_raises_a_clear_error(bad, message):
    with pytest.raises(ValueError, match=message):
        UNetConfig(**bad)


def test_bad_inputs_raise_clear_errors():
    model = tiny_unet(num_classes=10)
    x_t, t = torch.randn(2, 1, 16, 16), torch.tensor([1, 2])
    with pytest.raises(ValueError, match="divisible by 2"):
        model(torch.randn(2, 1, 15, 16), t)
    with pytest.raises(ValueError, match=r"x_t must be \(B, 1, H, W\)"):
        model(torch.randn(2, 3, 16, 16), t)
    with pytest.raises(ValueError, match="t must be a tensor of shape"):
        model(x_t, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="class labels must lie in 0 ... 10"):
        model(x_t, t, class_labels=torch.tensor([3, 11]))
    with pytest.raises(ValueError, match="class_labels must be integers"):
        model(x_t, t, class_labels=torch.tensor([3.0, 1.0]))
    with pytest.raises(ValueError, match="no class embedding"):
        tiny_unet()(x_t, t, class_labels=torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="no cross-attention"):
        model(x_t, t, context=torch.randn(2, 3, 8))
    with_context = tiny_unet(context_dim=8)
    with pytest.raises(ValueError, match="context must be"):
        with_context(x_t, t)
    with pytest.raises(ValueError, match="at least one real token"):
        with_context(x_t, t, context=torch.randn(2, 3, 8), context_mask=torch.tensor([[1, 0, 0], [0, 0, 0]]).bool())
