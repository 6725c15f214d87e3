"""Token conditioning: attribute tokens, condition dropout, the encoder's mask. (Guidance through tokens is the
pipeline's token_denoiser: tests/test_pipeline.py.)"""

import pytest
import torch
from support.tiny import RED_CIRCLE, tiny_conditioned_unet, tiny_unet_config

from minidiff.data.shapes import shapes
from minidiff.nets.conditioning import (
    ATTRIBUTE_VOCABULARY,
    ConditionedUNet,
    EncoderConfig,
    attribute_tokens,
    describe_tokens,
    drop_tokens,
    training_captions,
)
from minidiff.nets.text import PAD, START


def small_model(seed: int = 0) -> ConditionedUNet:
    return tiny_conditioned_unet(seed, attention_levels=(True, True), dropout=0.0)


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
    config = tiny_unet_config(in_channels=4, context_dim=32)
    with pytest.raises(ValueError, match="context_dim"):
        ConditionedUNet(config, EncoderConfig(dim=16))


def test_text_training_captions_mix_full_and_shortened_ones():
    _, captions, attributes = shapes(400, "train", seed=0)
    mixed = training_captions(attributes, seed=0)
    full = sum(m == c for m, c in zip(mixed, captions))
    assert 150 < full < 250  # about half full (a short caption can equal the full one by chance)
    assert all(a["shape"] in m for m, a in zip(mixed, attributes))  # the shape word is always there
    assert mixed == training_captions(attributes, seed=0)
