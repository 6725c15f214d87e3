r"""A tiny CLIP: an image encoder and a text encoder trained so that a picture and its caption land on the same
point of one shared space. Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
Supervision" (CLIP), sec. 2.3 and Figure 3.

- Text: the transformer of minidiff.nets.text over byte-pair tokens (minidiff.nets.bpe), its outputs averaged over
  the caption's real tokens.
- Image: a small convolutional network, 32 x 32 -> 4 x 4 in three stride-2 stages, averaged over positions.
- Each is projected linearly into the shared space and scaled to unit length: image_embeddings and text_embeddings
  (B, embed_dim), CLIP's $I_e$ and $T_e$ (our $T$ is the number of diffusion steps, so we write them out).
- Loss: for a batch of B (image, caption) pairs, the B x B cosine similarities divided by a learnt temperature are
  logits; the right caption of each image is the diagonal, and so is the right image of each caption. The symmetric
  InfoNCE loss (Oord et al. 2018) is the mean of the two cross-entropies, over rows and over columns.

A trained pair of encoders reads captions it never saw paired with an image ("zero-shot"): `retrieval_accuracy`
asks, for each image, where its own caption ranks among 100 candidates.
"""

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from minidiff.nets.text import TextEncoder


@dataclass
class CLIPConfig:
    """The tiny CLIP's shape. Every field is read by the network."""

    vocabulary_size: int  # the byte-pair tokenizer's len() (data/emoji_bpe.json: 1,058)
    length: int = 24  # <start> + 23 pieces: the longest styled emoji caption takes 22 tokens
    text_dim: int = 128  # width of the text transformer
    text_layers: int = 3  # its blocks (attention + MLP each)
    heads: int = 4
    channels: tuple[int, ...] = (32, 64, 128)  # the image encoder's stages: 32 -> 16 -> 8 -> 4 pixels
    groups: int = 8  # GroupNorm groups in the image encoder
    embed_dim: int = 128  # the shared space
    temperature: float = 0.07  # CLIP's initial temperature (sec. 2.5); it learns logit_scale = log(1 / temperature)

    def __post_init__(self):
        self.channels = tuple(self.channels)
        if any(c % self.groups for c in self.channels):
            raise ValueError(f"every channel count {self.channels} must divide into groups={self.groups}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CLIPConfig":
        return cls(**d)


class ImageEncoder(nn.Module):
    """Images (B, 3, 32, 32) in [-1, 1] -> features (B, channels[-1]): a stem convolution, then per stage a
    stride-2 convolution and a 3 x 3 one (GroupNorm and SiLU before each), then the mean over positions."""

    def __init__(self, channels: tuple[int, ...], groups: int):
        super().__init__()
        layers = [nn.Conv2d(3, channels[0], 3, padding=1)]
        previous = channels[0]
        for width in channels:
            layers += [nn.GroupNorm(groups, previous), nn.SiLU(), nn.Conv2d(previous, width, 3, stride=2, padding=1),
                       nn.GroupNorm(groups, width), nn.SiLU(), nn.Conv2d(width, width, 3, padding=1)]
            previous = width
        layers += [nn.GroupNorm(groups, previous), nn.SiLU()]
        self.layers = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images).mean(dim=(2, 3))  # (B, 3, H, W) -> (B, C, H / 8, W / 8) -> (B, C)


class CLIP(nn.Module):
    """The two encoders, their projections into the shared space, and the learnt logit_scale = log(1 / temperature).

    CLIP's paper calls the temperature tau and logit_scale t; minidiff keeps tau and t for diffusion time
    (docs/notation.md), so here they are words."""

    def __init__(self, config: CLIPConfig):
        super().__init__()
        self.config = config
        self.image_encoder = ImageEncoder(config.channels, config.groups)
        self.text_encoder = TextEncoder(config.text_dim, config.length, config.text_layers, config.heads,
                                        vocabulary_size=config.vocabulary_size)
        # Radford et al. 2021, Figure 3: W_i and W_t, linear maps into the shared space
        self.image_projection = nn.Linear(config.channels[-1], config.embed_dim, bias=False)
        self.text_projection = nn.Linear(config.text_dim, config.embed_dim, bias=False)
        # $\text{logit\_scale} = \log(1 / \text{temperature})$, learnt: a log keeps the temperature positive
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / config.temperature)))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, 32, 32) in [-1, 1] -> unit vectors (B, embed_dim)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W) in [-1, 1], got {tuple(images.shape)}")
        return F.normalize(self.image_projection(self.image_encoder(images)), dim=-1)  # (B, C) -> (B, embed_dim)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids (B, length) from the byte-pair tokenizer -> unit vectors (B, embed_dim)."""
        context, mask = self.text_encoder(tokens)  # (B, L, text_dim), (B, L)
        weights = mask.unsqueeze(-1).to(context.dtype)  # (B, L, 1): 1 on real tokens, 0 on <pad>
        pooled = (context * weights).sum(dim=1) / weights.sum(dim=1)  # (B, L, text_dim) -> (B, text_dim)
        return F.normalize(self.text_projection(pooled), dim=-1)  # (B, embed_dim)

    def temperature(self) -> float:
        r"""The current temperature, $e^{-\text{logit\_scale}}$."""
        return math.exp(-self.logit_scale.item())

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """A batch of pairs -> their symmetric InfoNCE loss (a scalar)."""
        return clip_loss(self.encode_image(images), self.encode_text(tokens), self.logit_scale)


def clip_loss(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor, logit_scale: torch.Tensor,
              max_scale: float = 100.0) -> torch.Tensor:
    r"""Symmetric InfoNCE, Radford et al. 2021, Figure 3: image i's caption is text i.

    image_embeddings, text_embeddings: (B, D) unit vectors; logit_scale: log(1 / temperature), a scalar (1 /
    temperature is clipped to max_scale, as CLIP does, so the temperature cannot collapse to 0).
    """
    if image_embeddings.shape != text_embeddings.shape or image_embeddings.ndim != 2:
        raise ValueError(f"image and text embeddings must both be (B, D), got {tuple(image_embeddings.shape)} "
                         f"and {tuple(text_embeddings.shape)}")
    # $\mathrm{logits}_{ij} = \mathrm{image}_i \cdot \mathrm{text}_j \,/\, \text{temperature}$
    logits = logit_scale.exp().clamp(max=max_scale) * image_embeddings @ text_embeddings.T  # (B, B)
    labels = torch.arange(len(logits), device=logits.device)  # (B,): the pairs are on the diagonal
    # $\mathcal{L} = \tfrac12 (\mathrm{CE}(\mathrm{logits}) + \mathrm{CE}(\mathrm{logits}^\top))$, CE over each row
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def retrieval_accuracy(similarity: torch.Tensor, truth: torch.Tensor, candidates: int = 100,
                       generator: torch.Generator | None = None) -> dict[str, float]:
    """Zero-shot retrieval: for each image, its own caption and `candidates - 1` others drawn at random (without
    replacement) from the M captions; how often its caption ranks first, and among the first five, by similarity.

    similarity: (N, M) image-caption similarities; truth: (N,) the index of each image's caption among the M.
    A tie with the truth counts against it. Returns {"top1": share, "top5": share, "candidates": candidates}.
    """
    n, m = similarity.shape
    if truth.shape != (n,) or not 2 <= candidates <= m:
        raise ValueError(f"truth must be (N,) = ({n},) and candidates between 2 and M = {m}, got "
                         f"{tuple(truth.shape)} and {candidates}")
    rows = torch.arange(n)
    keys = torch.rand(n, m, generator=generator)  # a random order of the captions, one per image
    keys[rows, truth] = 2.0  # the truth sorts last: never drawn as a distractor
    distractors = keys.argsort(dim=1)[:, : candidates - 1]  # (N, candidates - 1)
    true_similarity = similarity[rows, truth].unsqueeze(1)  # (N, 1)
    beaten_by = (similarity.gather(1, distractors.to(similarity.device)) >= true_similarity).sum(dim=1)  # (N,)
    return {"top1": (beaten_by < 1).float().mean().item(), "top5": (beaten_by < 5).float().mean().item(),
            "candidates": candidates}
