"""Token conditioning: attribute tokens, condition dropout, the encoder's mask, and guidance through tokens."""

import pytest
import torch

from minidiff.nets.conditioning import (
    ATTRIBUTE_VOCABULARY,
    ConditionedUNet,
    EncoderConfig,
    attribute_tokens,
    describe_tokens,
    drop_tokens,
    empty_tokens,
)
from minidiff.nets.text import PAD, START
from minidiff.nets.unet import UNetConfig
from minidiff.pipeline import token_denoiser

RED_CIRCLE = {"colour": "red", "shape": "circle", "size": "small", "position": "top left"}


def small_model(seed: int = 0) -> ConditionedUNet:
    torch.manual_seed(seed)
    config = UNetConfig(in_channels=4, channels=(8, 16), blocks_per_level=1, attention_levels=(True, True), heads=2,
                        groups=4, context_dim=16, dropout=0.0)
    return ConditionedUNet(config, EncoderConfig(dim=16)).eval()


def test_attribute_tokens_name_each_word_after_the_start_token():
    tokens = attribute_tokens([RED_CIRCLE, {**RED_CIRCLE, "shape": None, "position": "center"}])
    assert tokens.shape == (2, 5) and tokens.dtype == torch.long
    words = [[ATTRIBUTE_VOCABULARY[i] for i in row] for row in tokens.tolist()]
    assert words[0] == ["<start>", "red", "circle", "small", "top left"]
    assert words[1] == ["<start>", "red", "<pad>", "small", "center"]
    assert describe_tokens(tokens) == ["red circle small top left", "red small center"]


def test_an_unknown_attribute_value_is_an_error_that_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown colour 'pink'.*'red'"):
        attribute_tokens([{**RED_CIRCLE, "colour": "pink"}])


def test_drop_tokens_drops_whole_conditions_and_single_words_at_their_rates_and_keeps_the_start():
    tokens = attribute_tokens([RED_CIRCLE]).repeat(20000, 1)
    dropped = drop_tokens(tokens, drop_all_prob=0.2, drop_each_prob=0.1, generator=torch.Generator().manual_seed(0))
    assert (dropped[:, 0] == START).all()
    empty = (dropped[:, 1:] == PAD).all(dim=1).float().mean().item()
    # all four words gone: dropped as a whole (0.2), or each one by chance (0.8 * 0.1**4)
    assert abs(empty - (0.2 + 0.8 * 0.1 ** 4)) < 0.01
    kept_rows = dropped[~(dropped[:, 1:] == PAD).all(dim=1)]
    assert abs((kept_rows[:, 1:] == PAD).float().mean().item() - 0.1) < 0.01
    again = drop_tokens(tokens, 0.2, 0.1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(dropped, again)


def test_the_encoder_masks_padding_and_checks_the_token_shape():
    model = small_model()
    tokens = attribute_tokens([{**RED_CIRCLE, "size": None}])
    context, mask = model.encode(tokens)
    assert context.shape == (1, 5, 16)
    assert mask.tolist() == [[True, True, True, False, True]]
    with pytest.raises(ValueError, match=r"tokens must be integer ids of shape \(B, 5\)"):
        model.encode(tokens[:, :3])


def test_a_dropped_word_has_no_effect_whatever_the_padding_vector_is():
    model = small_model()
    x_t, t = torch.randn(2, 4, 8, 8), torch.tensor([10, 900])
    tokens = attribute_tokens([{**RED_CIRCLE, "shape": None}, {**RED_CIRCLE, "colour": None}])
    with torch.no_grad():
        before = model(x_t, t, tokens)
        model.encoder.token_embedding.weight[PAD] += 5.0  # cross-attention must not look at <pad>
        after = model(x_t, t, tokens)
    assert torch.allclose(before, after, atol=1e-6)


def test_context_width_must_match_the_encoder():
    config = UNetConfig(in_channels=4, channels=(8, 16), attention_levels=(False, True), heads=2, groups=4,
                        context_dim=32)
    with pytest.raises(ValueError, match="context_dim"):
        ConditionedUNet(config, EncoderConfig(dim=16))


def test_token_guidance_with_w_1_is_conditional_and_w_0_is_the_empty_condition():
    model = small_model()
    x_t, t = torch.randn(3, 4, 8, 8), torch.tensor([5, 400, 999])
    tokens = attribute_tokens([RED_CIRCLE, {**RED_CIRCLE, "colour": "blue"}, {**RED_CIRCLE, "shape": "square"}])
    with torch.no_grad():
        conditional = model(x_t, t, tokens)
        unconditional = model(x_t, t, empty_tokens(tokens))
        assert torch.allclose(token_denoiser(model, tokens)(x_t, t), conditional, atol=1e-5)
        assert torch.allclose(token_denoiser(model, tokens, guidance=1.0)(x_t, t), conditional, atol=1e-5)
        assert torch.allclose(token_denoiser(model, tokens, guidance=0.0)(x_t, t), unconditional, atol=1e-5)
        guided = token_denoiser(model, tokens, guidance=3.0)(x_t, t)
    assert torch.allclose(guided, unconditional + 3.0 * (conditional - unconditional), atol=1e-4)
