r"""Conditioning a U-Net on a short sequence of tokens, read by cross-attention.

Latent diffusion (Rombach et al. 2022, sec. 3.3) conditions its U-Net on the context $c = \mathrm{enc}_\theta(y)$
($\tau_\theta(y)$ there): the input $y$ (a caption) turned into a sequence of vectors, one per token, which every
cross-attention layer reads. This module is that idea at its smallest. For the Shapes dataset, $y$ is the image's
four attributes, written as a four-word "sentence" [colour, shape, size, position] after a start token;
$\mathrm{enc}_\theta$ is a learned vector per word plus a learned vector per place. The text chapters replace this
table by a transformer over the words of a caption (`minidiff.nets.text`); the U-Net, the training loop and the
samplers stay the same. Stable Diffusion goes one step further: its text encoder is CLIP's text transformer, trained
beforehand on pictures and captions and frozen, and the U-Net reads its last layer's per-token vectors. Kind "clip"
is that: the text tower of a tiny CLIP (`minidiff.nets.clip`, over byte-pair tokens, `minidiff.nets.bpe`), its
weights copied from a CLIP checkpoint when training starts and never updated by the diffusion loss.
`ConditionedUNet` holds any of the three encoders (`EncoderConfig.kind`) and the U-Net it feeds; all three map
tokens (B, L) to a context (B, L, dim) and a mask (B, L).

- Classifier-free guidance (Ho & Salimans 2022, Algorithm 1) drops the whole condition: every attribute becomes the
  padding token, which cross-attention may not look at, so only the start token is left, the "empty prompt".
- Dropping single attributes (with a smaller probability) teaches the model partial prompts too: "a red shape
  somewhere" is the sentence with only the colour kept.

Papers: Rombach et al. 2022 (cross-attention conditioning); Ho & Salimans 2022 (condition dropout for guidance).
"""

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from minidiff.data.shapes import ATTRIBUTES, COLOURS, POSITIONS, SHAPES, SIZES, full_caption, short_caption
from minidiff.nets.dit import DiT, DiTConfig
from minidiff.nets.text import PAD, START, TextEncoder, tokenize_batch
from minidiff.nets.unet import UNet, UNetConfig

ATTRIBUTE_VOCABULARY = ("<pad>", "<start>", *COLOURS, *SHAPES, *SIZES, *POSITIONS)
ENCODER_KINDS = ("attributes", "text", "clip")
ATTRIBUTE_VALUES = {"colour": tuple(COLOURS), "shape": SHAPES, "size": tuple(SIZES), "position": tuple(POSITIONS)}


def attribute_tokens(attributes: list[dict]) -> torch.Tensor:
    """Token ids (N, 5) for N attribute dicts: [<start>, colour, shape, size, position].

    A missing or None attribute becomes <pad>: that word is left out of the condition. An unknown value is an
    error that lists the known ones.
    """
    rows = []
    for a in attributes:
        row = [START]
        for name in ATTRIBUTES:
            value = a.get(name)
            if value is None:
                row.append(PAD)
            elif value in ATTRIBUTE_VALUES[name]:
                row.append(ATTRIBUTE_VOCABULARY.index(value))
            else:
                raise ValueError(f"unknown {name} {value!r}; choose one of {list(ATTRIBUTE_VALUES[name])} "
                                 "(or None to leave it out)")
        rows.append(row)
    return torch.tensor(rows, dtype=torch.long).reshape(len(rows), 1 + len(ATTRIBUTES))  # (N, 5)


def training_captions(attributes: list[dict], seed: int = 0) -> list[str]:
    """One caption per image for text conditioning: the full caption or, half of the time, a shortened one that
    keeps the shape and drops each other attribute with probability 1/2 (so short prompts work too)."""
    rng = np.random.default_rng(seed)
    return [full_caption(a) if rng.random() < 0.5 else short_caption(a, rng) for a in attributes]


def condition_tokens(attributes: list[dict], kind: str, captions: list[str] | None = None) -> torch.Tensor:
    """The tokens an encoder of `kind` reads for these Shapes: attribute tokens (N, 5), or the captions' word
    tokens (N, 10) (full captions when none are given). A prompt's tokens, for any kind: `minidiff.nets.prompts`."""
    if kind == "attributes":
        return attribute_tokens(attributes)
    return tokenize_batch(captions if captions is not None else [full_caption(a) for a in attributes])


def describe_tokens(tokens: torch.Tensor) -> list[str]:
    """Token ids (N, L) back to words, dropped ones left out: e.g. "red circle top left"."""
    return [" ".join(ATTRIBUTE_VOCABULARY[i] for i in row.tolist() if i not in (PAD, START)) for row in tokens]


def drop_tokens(tokens: torch.Tensor, drop_all_prob: float, drop_each_prob: float,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace words by <pad>: all of a sample's words with probability drop_all_prob (the unconditional branch of
    classifier-free guidance), else each word with probability drop_each_prob. The start token always stays."""
    B, L = tokens.shape
    drop_all = torch.rand(B, generator=generator) < drop_all_prob  # (B,)
    drop_each = torch.rand(B, L, generator=generator) < drop_each_prob  # (B, L)
    drop = (drop_all[:, None] | drop_each) & (tokens != START)  # (B, L)
    return torch.where(drop, PAD, tokens)


@dataclass
class EncoderConfig:
    """The token encoder. kind "attributes": an embedding table over ATTRIBUTE_VOCABULARY (5 tokens);
    kind "text": `minidiff.nets.text.TextEncoder`, a tiny transformer over caption words (`length` tokens, `layers`
    pre-LN blocks of `heads`-head self-attention and MLP), trained with the U-Net;
    kind "clip": the same transformer over byte-pair tokens, shaped as the CLIP checkpoint `clip` says (its
    text_dim, length, text_layers, heads, vocabulary_size), copied from it and frozen."""

    kind: str = "attributes"
    dim: int = 64  # width of each token's vector: the U-Net's context_dim
    length: int = 1 + len(ATTRIBUTES)  # tokens per condition
    layers: int = 0  # transformer blocks (text and clip)
    heads: int = 4  # self-attention heads (text and clip)
    vocabulary_size: int | None = None  # clip: the byte-pair tokenizer's size; None: the Shapes words (text)
    clip: str | None = None  # clip: the CLIP checkpoint (name or path) whose text tower this is
    clip_sha256: str | None = None  # clip: that checkpoint's weights' sha256, filled when the tower is copied

    def __post_init__(self):
        if self.kind not in ENCODER_KINDS:
            raise ValueError(f"unknown encoder kind {self.kind!r}; choose one of {ENCODER_KINDS}")
        if (self.kind == "clip") != (self.clip is not None and self.vocabulary_size is not None):
            raise ValueError("an encoder of kind 'clip' names its CLIP checkpoint (clip) and vocabulary_size, and "
                             "only it does; make one with minidiff.models.clip_encoder_config")

    def to_dict(self) -> dict:
        return asdict(self)


class AttributeEncoder(nn.Module):
    r"""tokens (B, L) -> context (B, L, dim) and context_mask (B, L).

    $c_i = \mathrm{enc}_\theta(y)_i = W_{\mathrm{emb}}[y_i] + P[i]$.
    """

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(len(ATTRIBUTE_VOCABULARY), config.dim)
        self.position_embedding = nn.Parameter(torch.randn(config.length, config.dim) * 0.02)
        self.norm = nn.LayerNorm(config.dim)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if tokens.ndim != 2 or tokens.shape[1] != self.config.length or tokens.is_floating_point():
            raise ValueError(f"tokens must be integer ids of shape (B, {self.config.length}), got "
                             f"{tokens.dtype} {tuple(tokens.shape)}; make them with attribute_tokens()")
        context = self.token_embedding(tokens) + self.position_embedding  # (B, L) -> (B, L, dim)
        return self.norm(context), tokens != PAD  # (B, L, dim), (B, L) True = a real token


class ConditionedUNet(nn.Module):
    """A U-Net with cross-attention and the token encoder that feeds it, trained together. Given a `DiTConfig`
    instead of a `UNetConfig`, the network is a diffusion transformer (`minidiff.nets.dit.DiT`), which takes the same
    inputs; it keeps the attribute name `unet`, under which every saved checkpoint stores the network's weights.

    `forward(x_t, t, tokens)` is what training calls. Sampling encodes the tokens once (`encode`) and then calls
    the U-Net alone at every step (`minidiff.pipeline.token_denoiser`), as Stable Diffusion's pipeline does with
    its text encoder.
    """

    def __init__(self, unet_config: UNetConfig | DiTConfig, encoder_config: EncoderConfig):
        super().__init__()
        if unet_config.context_dim != encoder_config.dim:
            raise ValueError(f"the network's context_dim ({unet_config.context_dim}) must equal the encoder's dim "
                             f"({encoder_config.dim}): cross-attention reads the encoder's vectors")
        self.config = unet_config
        if encoder_config.kind == "attributes":
            self.encoder = AttributeEncoder(encoder_config)
        else:
            vocabulary = {} if encoder_config.vocabulary_size is None else {
                "vocabulary_size": encoder_config.vocabulary_size}
            self.encoder = TextEncoder(encoder_config.dim, encoder_config.length, encoder_config.layers,
                                       encoder_config.heads, **vocabulary)
        if encoder_config.kind == "clip":
            self.encoder.requires_grad_(False)  # frozen: the optimizer never updates it, the loss never reaches it
        self.unet = DiT(unet_config) if isinstance(unet_config, DiTConfig) else UNet(unet_config)

    def encode(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (B, L) -> context (B, L, dim), context_mask (B, L)."""
        return self.encoder(tokens)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """x_t (B, C, H, W), t (B,), tokens (B, L) -> the U-Net's prediction (B, C, H, W)."""
        context, context_mask = self.encode(tokens)
        return self.unet(x_t, t, context=context, context_mask=context_mask)


def empty_tokens(like: torch.Tensor) -> torch.Tensor:
    """The unconditional input of the same shape as `like` (B, L): <start> and then only <pad>."""
    empty = torch.full_like(like, PAD)
    empty[:, 0] = START
    return empty
