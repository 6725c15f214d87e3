"""Byte-pair encoding: a subword tokenizer learnt from the captions, so a word it never saw splits into pieces it
knows. Sennrich, Haddow & Birch 2016, "Neural Machine Translation of Rare Words with Subword Units", Algorithm 1.

Learning (`learn_bpe`): write every word of the corpus as its characters and an end-of-word mark, "fox" ->
f o x </w>; then, again and again, find the pair of neighbouring symbols that occurs most often (counting each word
as often as it occurs) and merge it into one new symbol everywhere: (o, x) -> ox, then (f, ox</w>)... Each merge
adds one symbol to the vocabulary; the list of merges, in order, is the tokenizer. Ties go to the pair that sorts
first, so the same corpus always gives the same merges.

Encoding (`BPETokenizer.encode`): a word starts as characters again, and the merges are applied by rank: the pair
learnt earliest is merged first, until no learnt pair is left. "foxes" -> fox es</w> if both were learnt. A
character never seen in training has no symbol: it is dropped, with a warning; a prompt with nothing left (or
nothing at all) is a ValueError.

Ids: 0 is <pad> and 1 is <start>, as in minidiff.nets.text (whose TextEncoder reads these ids), then the
characters, then the merged symbols in the order they were learnt.
"""

import warnings
from collections import Counter
from dataclasses import dataclass, field

import torch

from minidiff.data.emoji import bpe_table
from minidiff.nets.text import PAD, START

END_OF_WORD = "</w>"
SPECIAL = ("<pad>", "<start>")  # ids PAD = 0 and START = 1


def words_of(text: str) -> list[str]:
    """Lower-case words split at white space; punctuation stays with its word: "Fox: red" -> ["fox:", "red"]."""
    return text.lower().split()


def count_pairs(words: dict[tuple[str, ...], int]) -> Counter:
    """How often each pair of neighbouring symbols occurs, each word counted as often as it occurs."""
    pairs = Counter()
    for symbols, count in words.items():
        for pair in zip(symbols, symbols[1:]):
            pairs[pair] += count
    return pairs


def merge_pair(symbols: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    """Replace every occurrence of `pair` in `symbols` by one joined symbol, left to right."""
    merged, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            merged.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            merged.append(symbols[i])
            i += 1
    return tuple(merged)


def learn_bpe(texts: list[str], merges: int) -> "BPETokenizer":
    """Learn up to `merges` merges from `texts` (Sennrich et al. 2016, Algorithm 1): most frequent pair first, ties
    to the pair that sorts first; stops early when no pair occurs twice."""
    if merges < 0:
        raise ValueError(f"merges must be at least 0, got {merges}")
    counts = Counter(word for text in texts for word in words_of(text))
    if not counts:
        raise ValueError("texts holds no words to learn from")
    words = {(*word, END_OF_WORD): count for word, count in counts.items()}
    alphabet = sorted({symbol for symbols in words for symbol in symbols})
    learnt = []
    for _ in range(merges):
        pairs = count_pairs(words)
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))  # the most frequent; ties: the first in order
        if pairs[best] < 2:
            break
        learnt.append(best)
        words = {merge_pair(symbols, best): count for symbols, count in words.items()}
    return BPETokenizer(alphabet=alphabet, merges=learnt)


@dataclass
class BPETokenizer:
    """A learnt byte-pair encoding: its alphabet (every character seen, and </w>) and its merges, in order."""

    alphabet: list[str]
    merges: list[tuple[str, str]]
    vocabulary: list[str] = field(init=False)  # id -> symbol: <pad>, <start>, the alphabet, the merged symbols
    ids: dict[str, int] = field(init=False)  # symbol -> id
    ranks: dict[tuple[str, str], int] = field(init=False)  # pair -> when it was learnt (0 = first)

    def __post_init__(self):
        self.merges = [tuple(pair) for pair in self.merges]
        self.vocabulary = [*SPECIAL, *self.alphabet, *(left + right for left, right in self.merges)]
        self.ids = {symbol: i for i, symbol in enumerate(self.vocabulary)}
        self.ranks = {pair: rank for rank, pair in enumerate(self.merges)}
        if len(self.ids) != len(self.vocabulary) or self.ids["<pad>"] != PAD or self.ids["<start>"] != START:
            raise ValueError("the alphabet and merges must give distinct symbols, after <pad> and <start>")

    def __len__(self) -> int:
        return len(self.vocabulary)

    def split_word(self, word: str) -> list[str]:
        """One word -> its symbols: characters and </w>, merged by rank until no learnt pair is left."""
        symbols = (*word, END_OF_WORD)
        while len(symbols) > 1:
            pair = min(zip(symbols, symbols[1:]), key=lambda p: self.ranks.get(p, len(self.ranks)))
            if pair not in self.ranks:
                break
            symbols = merge_pair(symbols, pair)
        return list(symbols)

    def encode(self, prompt: str) -> list[int]:
        """A prompt -> ids [<start>, symbols of each word...] (not padded). Characters outside the alphabet are
        dropped with a warning; a prompt left empty is a ValueError."""
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a string, got {type(prompt).__name__}")
        unknown = sorted({c for word in words_of(prompt) for c in word if c not in self.ids})
        if unknown:
            warnings.warn(f"dropped the characters {unknown} of {prompt!r}: the tokenizer never saw them",
                          stacklevel=2)
        kept = ["".join(c for c in word if c in self.ids) for word in words_of(prompt)]
        symbols = [symbol for word in kept if word for symbol in self.split_word(word)]
        if not symbols:
            raise ValueError(f"the prompt {prompt!r} holds no character the tokenizer knows; write some words, "
                             "e.g. 'red apple in noto style'")
        return [START] + [self.ids[symbol] for symbol in symbols]

    def decode(self, ids: list[int]) -> str:
        """Ids -> text: the symbols joined, </w> read as a space; <pad> and <start> left out."""
        symbols = [self.vocabulary[i] for i in ids if i not in (PAD, START)]
        return "".join(symbols).replace(END_OF_WORD, " ").strip()

    def encode_batch(self, prompts: list[str], length: int) -> torch.Tensor:
        """Prompts -> ids (B, length), each row padded with <pad>; a longer prompt is cut, with a warning."""
        if isinstance(prompts, str) or not prompts:
            raise TypeError("prompts must be a non-empty list of strings")
        rows = []
        for prompt in prompts:
            row = self.encode(prompt)
            if len(row) > length:
                warnings.warn(f"{prompt!r} is {len(row)} tokens; only the first {length} are used", stacklevel=2)
                row = row[:length]
            rows.append(row + [PAD] * (length - len(row)))
        return torch.tensor(rows, dtype=torch.long)  # (B, length)

    def to_dict(self) -> dict:
        """A JSON-ready dict: the alphabet, the merges, and the vocabulary they give (for a reader's eyes)."""
        return {"alphabet": self.alphabet, "merges": [list(pair) for pair in self.merges],
                "vocabulary": self.vocabulary}

    @classmethod
    def from_dict(cls, d: dict) -> "BPETokenizer":
        """The inverse of to_dict; a vocabulary that disagrees with the alphabet and merges is a ValueError."""
        tokenizer = cls(alphabet=list(d["alphabet"]), merges=[tuple(pair) for pair in d["merges"]])
        if "vocabulary" in d and d["vocabulary"] != tokenizer.vocabulary:
            raise ValueError("the stored vocabulary does not follow from the stored alphabet and merges")
        return tokenizer


def emoji_tokenizer() -> BPETokenizer:
    """The byte-pair encoding learnt from the emoji training captions, as shipped in data/emoji_bpe.json."""
    return BPETokenizer.from_dict(bpe_table())
