"""Byte-pair encoding against merges computed by hand and a naive re-implementation, and the shipped tokenizer."""

import pytest

from minidiff.data.emoji import bpe_table, emoji
from minidiff.nets.bpe import END_OF_WORD, BPETokenizer, emoji_tokenizer, learn_bpe
from minidiff.nets.text import PAD, START

# Sennrich et al.'s toy corpus; the merges worked out by hand (most frequent pair, ties to the pair that sorts first):
# e s (9; s t and t </w> also 9), es t (9), est </w> (9), l o (7), lo w (7), e w (6), ew est</w> (6), n ewest</w>
# (6), low </w> (5), d est</w> (3), i dest</w> (3), w idest</w> (3), e r (2), er </w> (2), low er</w> (2); then every
# word is one symbol.
TOY = ["low"] * 5 + ["lower"] * 2 + ["newest"] * 6 + ["widest"] * 3
TOY_MERGES = [("e", "s"), ("es", "t"), ("est", "</w>"), ("l", "o"), ("lo", "w"), ("e", "w"), ("ew", "est</w>"),
              ("n", "ewest</w>"), ("low", "</w>"), ("d", "est</w>"), ("i", "dest</w>"), ("w", "idest</w>"),
              ("e", "r"), ("er", "</w>"), ("low", "er</w>")]


def naive_learn(texts: list[str], merges: int) -> list[tuple[str, str]]:
    """Brute force: every occurrence of every word kept as its own list of symbols, all pairs recounted each round."""
    occurrences = [list(word) + [END_OF_WORD] for text in texts for word in text.lower().split()]
    learnt = []
    for _ in range(merges):
        counts = {}
        for symbols in occurrences:
            for i in range(len(symbols) - 1):
                counts[(symbols[i], symbols[i + 1])] = counts.get((symbols[i], symbols[i + 1]), 0) + 1
        if not counts or max(counts.values()) < 2:
            break
        top = max(counts.values())
        best = sorted(pair for pair, count in counts.items() if count == top)[0]
        learnt.append(best)
        for symbols in occurrences:
            i = 0
            while i < len(symbols) - 1:
                if (symbols[i], symbols[i + 1]) == best:
                    symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]
                i += 1
    return learnt


def naive_split(word: str, merges: list[tuple[str, str]]) -> list[str]:
    """Sennrich et al.'s way of applying merges: each merge in the order learnt, over the whole word."""
    symbols = list(word) + [END_OF_WORD]
    for left, right in merges:
        i = 0
        while i < len(symbols) - 1:
            if symbols[i] == left and symbols[i + 1] == right:
                symbols[i:i + 2] = [left + right]
            i += 1
    return symbols


@pytest.fixture(scope="module")
def captions():
    train = emoji("train")
    return list(train.captions) + train.styled_captions()


def test_the_toy_corpus_gives_the_merges_worked_out_by_hand():
    tokenizer = learn_bpe(TOY, merges=20)
    assert tokenizer.merges == TOY_MERGES, "15 merges, then every word is one symbol and learning stops"
    assert naive_learn(TOY, 20) == TOY_MERGES
    assert tokenizer.vocabulary[:2] == ["<pad>", "<start>"] and tokenizer.vocabulary[-1] == "lower</w>"
    assert [tokenizer.vocabulary[i] for i in tokenizer.encode("lowest")] == ["<start>", "low", "est</w>"]


def test_learning_agrees_with_the_naive_reference_on_captions(captions):
    sample = captions[::20]
    assert learn_bpe(sample, merges=150).merges == naive_learn(sample, 150)


def test_encoding_by_rank_equals_applying_the_merges_in_order(captions):
    tokenizer = learn_bpe(captions[::5], merges=300)
    every = emoji(split=None)
    words = sorted({word for caption in every.styled_captions() for word in caption.split()})  # unseen ones too
    words += ["foxicorn", "zzzz", "unbelievable", "tone-deaf"]
    for word in words:
        assert tokenizer.split_word(word) == naive_split(word, tokenizer.merges), word


def test_an_unseen_word_splits_into_known_pieces_and_decodes_back():
    tokenizer = emoji_tokenizer()
    ids = tokenizer.encode("A Foxicorn in twemoji style")
    assert ids[0] == START and all(0 <= i < len(tokenizer) for i in ids)
    assert len(ids) > 1 + 4, "the unseen word takes several pieces"
    assert tokenizer.decode(ids) == "a foxicorn in twemoji style"


def test_every_caption_decodes_back(captions):
    tokenizer = emoji_tokenizer()
    for caption in captions[::7]:
        assert tokenizer.decode(tokenizer.encode(caption)) == " ".join(caption.split())


def test_empty_and_unknown_prompts():
    tokenizer = emoji_tokenizer()
    for prompt in ("", "   "):
        with pytest.raises(ValueError, match="holds no character the tokenizer knows"):
            tokenizer.encode(prompt)
    with pytest.raises(ValueError, match="holds no character"), pytest.warns(UserWarning, match="'🦊'"):
        tokenizer.encode("🦊🦊")
    with pytest.warns(UserWarning, match="dropped the characters"):
        assert tokenizer.decode(tokenizer.encode("red 🦊 apple")) == "red apple"
    with pytest.raises(TypeError, match="prompt must be a string"):
        tokenizer.encode(3)
    with pytest.raises(ValueError, match="merges must be at least 0"):
        learn_bpe(["a b"], merges=-1)
    with pytest.raises(ValueError, match="no words"):
        learn_bpe([" "], merges=3)


def test_batches_are_padded_and_cut():
    tokenizer = emoji_tokenizer()
    batch = tokenizer.encode_batch(["cat", "red apple in noto style"], length=8)
    cat = tokenizer.encode("cat")
    assert batch.shape == (2, 8) and batch[0].tolist() == cat + [PAD] * (8 - len(cat))
    assert batch[1].tolist() == [START, *(tokenizer.ids[s] for s in ("red</w>", "app", "le</w>", "in</w>", "noto</w>",
                                                                 "style</w>")), PAD]
    with pytest.warns(UserWarning, match="only the first 3"):
        assert tokenizer.encode_batch(["red apple in noto style"], length=3).shape == (1, 3)


def test_the_shipped_tokenizer_is_learnt_from_the_training_captions(captions):
    table = bpe_table()
    shipped = BPETokenizer.from_dict(table)
    assert len(shipped.merges) == table["merges_asked"] == 1000
    assert learn_bpe(captions, merges=100).merges == shipped.merges[:100], "greedy: its first merges come first"
    assert BPETokenizer.from_dict(shipped.to_dict()) == shipped
    with pytest.raises(ValueError, match="does not follow"):
        BPETokenizer.from_dict({**table, "vocabulary": table["vocabulary"][::-1]})
