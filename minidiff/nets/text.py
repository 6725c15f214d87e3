r"""From a prompt to vectors: a word-level tokenizer and a tiny transformer encoder, written out.

Papers followed:
- Vaswani et al. 2017, "Attention Is All You Need": token + position embeddings, multi-head self-attention
  (eq. 1, scaled dot-product), position-wise MLP, residual connections.
- Xiong et al. 2020, "On Layer Normalization in the Transformer Architecture": the pre-LayerNorm block,
  x + Attention(LN(x)), then x + MLP(LN(x)), which trains without a warm-up dance; CLIP's text tower is built so.
- Rombach et al. 2022, sec. 3.3: the encoder's output, one vector per token, is the context
  $c = \mathrm{enc}_\theta(y)$ ($\tau_\theta(y)$ there) that the U-Net's cross-attention reads.

The tokenizer is word-level: the Shapes captions use 19 distinct words, so each word gets its own id, and a
prompt is "<start>" followed by its words, padded with "<pad>" to a fixed length. (Real models split text into
sub-word pieces, so they never meet an unknown word; with 19 words, whole words are clearer.) A word outside the
vocabulary is an error that names it and lists the vocabulary, or, when asked, dropped with a warning.
"""

import re
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from minidiff.data.shapes import COLOURS, POSITIONS, SHAPES, SIZES
from minidiff.nets.layers import attention, merge_heads, split_heads

PAD, START = 0, 1  # padding (never attended to) and the start token; minidiff.nets.conditioning uses them too
CAPTION_WORDS = sorted({"a", "in", "the", *COLOURS, *SHAPES, *SIZES, *(w for p in POSITIONS for w in p.split())})
VOCABULARY = ("<pad>", "<start>", *CAPTION_WORDS)
MAX_LENGTH = 10  # <start> + up to 9 words: "a small red circle in the top left" has 8
UNKNOWN_WORDS = ("error", "drop")


def words_of(prompt: str) -> list[str]:
    """Lower-case words, punctuation removed: "A red circle, top-left!" -> ["a", "red", "circle", "top", "left"]."""
    return re.findall(r"[a-z]+", prompt.lower())


def tokenize(prompt: str, unknown: str = "error", max_length: int = MAX_LENGTH) -> list[int]:
    """One prompt -> token ids [<start>, word, word, ...] (not padded).

    unknown="error": a word outside VOCABULARY raises a ValueError naming it; "drop": it is left out, with a warning.
    A prompt longer than max_length tokens is cut to max_length, with a warning.
    """
    if unknown not in UNKNOWN_WORDS:
        raise ValueError(f"unknown must be one of {UNKNOWN_WORDS}, got {unknown!r}")
    tokens = [START]
    for word in words_of(prompt):
        if word in VOCABULARY:
            tokens.append(VOCABULARY.index(word))
        elif unknown == "error":
            raise ValueError(f"the word {word!r} in {prompt!r} is not in the vocabulary; the model knows only: "
                             f"{', '.join(CAPTION_WORDS)}")
        else:
            warnings.warn(f"dropped the unknown word {word!r} from {prompt!r}", stacklevel=2)
    if len(tokens) > max_length:
        warnings.warn(f"{prompt!r} has {len(tokens) - 1} words; only the first {max_length - 1} are used", stacklevel=2)
        tokens = tokens[:max_length]
    return tokens


def tokenize_batch(prompts: list[str], unknown: str = "error", max_length: int = MAX_LENGTH) -> torch.Tensor:
    """Prompts -> token ids (B, max_length), each row padded with <pad> (id 0) after its words."""
    rows = [tokenize(prompt, unknown, max_length) for prompt in prompts]
    return torch.tensor([row + [PAD] * (max_length - len(row)) for row in rows], dtype=torch.long)


def detokenize(tokens: torch.Tensor) -> list[str]:
    """Token ids (B, L) -> the prompts' words, <start> and <pad> left out."""
    return [" ".join(VOCABULARY[i] for i in row.tolist() if i not in (PAD, START)) for row in tokens]


class SelfAttentionBlock(nn.Module):
    r"""Pre-LN multi-head self-attention over tokens, padding masked: $x + \mathrm{MHA}(\mathrm{LN}(x))$."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * dim)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, L, dim), mask (B, L) True = real token -> (B, L, dim)."""
        q, k, v = self.to_qkv(self.norm(x)).chunk(3, dim=2)  # (B, L, dim) -> 3 x (B, L, dim)
        q, k, v = (split_heads(a, self.heads) for a in (q, k, v))  # -> (B, heads, L, dim / heads)
        # Vaswani et al. 2017, eq. 1: $\mathrm{softmax}(Q K^\top / \sqrt{d_k} + M)\, V$, $M = -\infty$ at padding
        out = attention(q, k, v, mask)  # (B, heads, L, dim / heads), no weight on padding tokens
        return x + self.to_out(merge_heads(out))  # (B, heads, L, dim / heads) -> (B, L, dim)


class MLPBlock(nn.Module):
    r"""Pre-LN position-wise MLP: $x + W_2\, \mathrm{GELU}(W_1\, \mathrm{LN}(x))$, 4x wider inside."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, 4 * dim)
        self.down = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(F.gelu(self.up(self.norm(x))))  # (B, L, dim) -> (B, L, 4 dim) -> (B, L, dim)


class TextEncoder(nn.Module):
    """Token ids (B, L) -> context (B, L, dim) and context_mask (B, L): embeddings, then `layers` transformer blocks.
    The ids are this module's word ids, or those of another tokenizer with `vocabulary_size` symbols (a tiny CLIP's
    byte-pair encoding, minidiff.nets.bpe), as long as 0 is <pad>."""

    def __init__(self, dim: int, length: int = MAX_LENGTH, layers: int = 2, heads: int = 4,
                 vocabulary_size: int = len(VOCABULARY)):
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"dim {dim} cannot be split into {heads} heads")
        self.length = length
        self.token_embedding = nn.Embedding(vocabulary_size, dim)
        self.position_embedding = nn.Parameter(torch.randn(length, dim) * 0.02)
        self.blocks = nn.ModuleList()
        for _ in range(layers):
            self.blocks.append(SelfAttentionBlock(dim, heads))
            self.blocks.append(MLPBlock(dim))
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if tokens.ndim != 2 or tokens.shape[1] != self.length or tokens.is_floating_point():
            raise ValueError(f"tokens must be integer ids of shape (B, {self.length}), got {tokens.dtype} "
                             f"{tuple(tokens.shape)}; make them with minidiff.nets.text.tokenize_batch (or the "
                             "encode_batch of the byte-pair tokenizer the encoder was built for)")
        mask = tokens != PAD  # (B, L)
        x = self.token_embedding(tokens) + self.position_embedding  # (B, L) -> (B, L, dim)
        for block in self.blocks:
            x = block(x, mask) if isinstance(block, SelfAttentionBlock) else block(x)
        return self.norm(x), mask
