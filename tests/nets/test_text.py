"""The tokenizer and the tiny transformer: round trips, unknown and long prompts, the padding mask, attention."""

import warnings

import pytest
import torch

from minidiff.data.shapes import full_caption, shapes
from minidiff.nets.text import (
    CAPTION_WORDS,
    MAX_LENGTH,
    PAD,
    START,
    VOCABULARY,
    SelfAttentionBlock,
    TextEncoder,
    detokenize,
    tokenize,
    tokenize_batch,
)


def test_every_caption_of_both_splits_round_trips():
    captions = shapes(300, "train", seed=0)[1] + shapes(50, "heldout", seed=0)[1]
    tokens = tokenize_batch(captions)
    assert tokens.shape == (350, MAX_LENGTH) and (tokens[:, 0] == START).all()
    assert detokenize(tokens) == captions


def test_the_vocabulary_is_exactly_the_words_of_the_captions():
    seen = {word for caption in shapes(2000, "train", seed=1)[1] + shapes(200, "heldout", seed=1)[1]
            for word in caption.split()}
    assert set(CAPTION_WORDS) == seen
    assert VOCABULARY[PAD] == "<pad>" and VOCABULARY[START] == "<start>"


def test_case_and_punctuation_do_not_matter():
    assert tokenize("A Red circle, in the TOP-left!") == tokenize("a red circle in the top left")


def test_an_unknown_word_is_an_error_naming_it_and_listing_the_vocabulary():
    with pytest.raises(ValueError, match=r"'pink'.*knows only: a, blue, bottom"):
        tokenize("a pink circle")


def test_an_unknown_word_can_be_dropped_with_a_warning():
    with pytest.warns(UserWarning, match="dropped the unknown word 'pink'"):
        assert tokenize("a pink circle", unknown="drop") == tokenize("a circle")


def test_a_long_prompt_is_cut_with_a_warning():
    with pytest.warns(UserWarning, match="only the first 9 are used"):
        ids = tokenize("a red circle a blue square in the top left")
    assert len(ids) == MAX_LENGTH
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the longest real caption fits without a warning
        assert len(tokenize(full_caption({"size": "small", "colour": "red", "shape": "circle",
                                           "position": "bottom right"}))) == 9


def test_padding_changes_nothing_for_the_real_tokens():
    torch.manual_seed(0)
    encoder = TextEncoder(dim=32, layers=2, heads=4).eval()
    tokens = tokenize_batch(["a red circle", "a large blue square in the center"])
    with torch.no_grad():
        context, mask = encoder(tokens)
        encoder.token_embedding.weight[PAD] += 3.0  # if any real token looked at padding, it would change
        context_after, _ = encoder(tokens)
    assert context.shape == (2, MAX_LENGTH, 32)
    assert mask.tolist()[0] == [True] * 4 + [False] * 6
    assert torch.allclose(context[mask], context_after[mask], atol=1e-6)


def test_self_attention_matches_torch_multihead_attention():
    torch.manual_seed(0)
    dim, heads = 32, 4
    block = SelfAttentionBlock(dim, heads).eval()
    reference = torch.nn.MultiheadAttention(dim, heads, batch_first=True).eval()
    with torch.no_grad():
        reference.in_proj_weight.copy_(block.to_qkv.weight)
        reference.in_proj_bias.copy_(block.to_qkv.bias)
        reference.out_proj.weight.copy_(block.to_out.weight)
        reference.out_proj.bias.copy_(block.to_out.bias)
        x = torch.randn(3, 7, dim)
        mask = torch.tensor([[True] * 7, [True] * 3 + [False] * 4, [True] * 5 + [False] * 2])
        normed = block.norm(x)
        expected, _ = reference(normed, normed, normed, key_padding_mask=~mask, need_weights=False)
        got = block(x, mask)
    assert torch.allclose(got, x + expected, atol=1e-5)


def test_the_encoder_checks_its_input():
    encoder = TextEncoder(dim=16, layers=1, heads=2)
    with pytest.raises(ValueError, match=r"tokens must be integer ids of shape \(B, 10\)"):
        encoder(torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="cannot be split into 3 heads"):
        TextEncoder(dim=16, heads=3)
