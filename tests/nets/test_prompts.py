"""token_names reads back what prompt_tokens wrote, for every kind of encoder, and refuses ids outside its vocabulary."""

import pytest
import torch

from minidiff.nets.conditioning import EncoderConfig
from minidiff.nets.prompts import prompt_tokens, token_names


def test_token_names_read_back_a_text_prompt_word_by_word():
    config = EncoderConfig(kind="text", length=10)
    ids = prompt_tokens(["a large red circle in the top left"], config)[0]
    assert token_names(ids, config) == ["<start>", "a", "large", "red", "circle", "in", "the", "top", "left", "<pad>"]


def test_token_names_read_back_the_byte_pair_pieces_of_an_emoji_prompt():
    config = EncoderConfig(kind="clip", length=24, dim=128, layers=3, heads=4, vocabulary_size=1058, clip="emoji_clip")
    prompt = "red apple in twemoji style"
    names = token_names(prompt_tokens([prompt], config)[0], config)
    assert names[0] == "<start>" and names[-1] == "<pad>"
    words = "".join(name for name in names if name not in ("<start>", "<pad>")).replace("</w>", " ").split()
    assert words == prompt.split()  # the pieces spell the prompt again, word by word


def test_token_names_read_back_the_attributes():
    config = EncoderConfig(kind="attributes")
    ids = prompt_tokens(["a small blue square in the center"], config)[0]
    assert token_names(ids, config) == ["<start>", "blue", "square", "small", "center"]


def test_an_id_outside_the_vocabulary_is_refused():
    with pytest.raises(ValueError, match="ids must lie in"):
        token_names(torch.tensor([1, 5000]), EncoderConfig(kind="text", length=10))
