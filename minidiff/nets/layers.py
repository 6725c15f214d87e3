"""The building blocks of the U-Net: time embedding, residual block, attention, down- and upsampling.

Papers followed:
- Vaswani et al. 2017, "Attention Is All You Need": sinusoidal position encoding (sec. 3.5), scaled dot-product
  attention (eq. 1) and multi-head attention (sec. 3.2.2).
- Ho, Jain & Abbeel 2020 (DDPM), appendix B: the timestep t is embedded like a Transformer position; ResBlocks with
  GroupNorm (Wu & He 2018); self-attention at low resolution; strided-conv down, nearest + conv up.
- Dhariwal & Nichol 2021, "Diffusion Models Beat GANs on Image Synthesis", sec. 3: adaptive group normalisation
  (AdaGN), the embedding scales and shifts the normalised features inside each ResBlock.
- Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion Models", sec. 3.3: cross-attention
  from image features to a text context.

Images are (B, C, H, W). Attention treats the H * W positions as a sequence of tokens.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of the timesteps t (B,) -> (B, dim): first dim/2 sines, then dim/2 cosines.

    Frequency i is 1 / max_period^(i / (dim/2)), from 1 down to almost 1 / max_period, so low dimensions tell
    neighbouring steps apart and high dimensions vary slowly across the whole range (Vaswani et al. 2017, sec. 3.5).
    t may hold fractional steps.
    """
    if dim % 2 != 0:
        raise ValueError(f"the timestep embedding needs an even dim (half sines, half cosines), got {dim}")
    half = dim // 2
    i = torch.arange(half, dtype=torch.float32, device=t.device)  # (half,)
    # $\omega_i = \text{max\_period}^{-i / (d/2)}$
    frequencies = torch.exp(-math.log(max_period) * i / half)  # (half,)
    # $\text{angle}_{b,i} = t_b\, \omega_i$
    angles = t.float()[:, None] * frequencies[None, :]  # (B,) x (half,) -> (B, half)
    # $e(t) = [\sin(t \omega_0), \dots, \sin(t \omega_{d/2-1}), \cos(t \omega_0), \dots, \cos(t \omega_{d/2-1})]$
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)  # (B, half) x 2 -> (B, dim)


def check_conditioning(config, B: int, t, class_labels, context, context_mask) -> None:
    """Check what a denoising network (U-Net or DiT) is conditioned on, for a batch of B: t (B,), class labels (B,)
    in 0 ... config.num_classes, a context (B, L, config.context_dim) and its mask (B, L). Raises a ValueError that
    says what is wrong and what to pass instead."""
    if not isinstance(t, torch.Tensor) or t.shape != (B,):
        shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"t must be a tensor of shape ({B},), one step per sample, got {shape}; "
                         "for one step for all use torch.full((B,), t)")
    if class_labels is not None:
        if config.num_classes is None:
            raise ValueError("class_labels given, but this network has no class embedding "
                             "(config.num_classes is None)")
        if class_labels.shape != (B,) or class_labels.is_floating_point():
            raise ValueError(f"class_labels must be integers of shape ({B},), "
                             f"got {class_labels.dtype} {tuple(class_labels.shape)}")
        low, high = class_labels.min().item(), class_labels.max().item()
        if low < 0 or high > config.num_classes:
            raise ValueError(f"class labels must lie in 0 ... {config.num_classes} "
                             f"({config.num_classes} = the null class), got {low} ... {high}")
    if config.context_dim is None:
        if context is not None:
            raise ValueError("context given, but this network has no cross-attention (config.context_dim is None)")
        return
    if context is None or context.ndim != 3 or context.shape[0] != B or context.shape[2] != config.context_dim:
        got = None if context is None else tuple(context.shape)
        raise ValueError(f"context must be (B={B}, L, {config.context_dim}), got {got}; for the unconditional "
                         "branch pass the text encoder's features of the empty prompt")
    if context_mask is not None:
        if context_mask.dtype != torch.bool or context_mask.shape != context.shape[:2]:
            raise ValueError(f"context_mask must be a bool tensor of shape {tuple(context.shape[:2])} "
                             f"(True = real token), got {context_mask.dtype} {tuple(context_mask.shape)}")
        if not context_mask.any(dim=1).all():
            raise ValueError("every sample needs at least one real token in context_mask (True = real token)")


def adaptive_group_norm(a: torch.Tensor, norm: nn.GroupNorm, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    r"""AdaGN (Dhariwal & Nichol 2021, sec. 3): features a (B, C, H, W), scale and shift (B, C) -> (B, C, H, W).

    $\text{AdaGN}(a, e) = (1 + \text{scale}(e))\, \text{GroupNorm}(a) + \text{shift}(e)$, where GroupNorm ends with its
    own affine map $\gamma \hat a + \beta$ of the normalised $\hat a$. The two affine maps fold into one, so the
    features are read and written once after normalising instead of three times:
    $(1 + s)(\gamma \hat a + \beta) + b = [\gamma (1 + s)]\, \hat a + [\beta (1 + s) + b]$.
    """
    gain = norm.weight * (1 + scale)  # (C,) x (B, C) -> (B, C)
    bias = norm.bias * (1 + scale) + shift  # (B, C)
    normalised = F.group_norm(a, norm.num_groups, eps=norm.eps)  # $\hat a$, no affine map
    return torch.addcmul(bias[:, :, None, None], normalised, gain[:, :, None, None])  # (B, C, H, W)


class ResBlock(nn.Module):
    """norm -> SiLU -> conv -> norm, scaled and shifted by the embedding (AdaGN) -> SiLU -> dropout -> conv, + skip.

    The embedding (time, plus class when there is one) enters once, after the second norm:
    AdaGN(a, e) = (1 + scale(e)) * GroupNorm(a) + shift(e) for features a (Dhariwal & Nichol 2021, sec. 3).
    With embed_dim None there is no embedding and the second norm is a plain GroupNorm: the autoencoder's
    blocks (minidiff.nets.autoencoder), which know nothing of time or class.
    """

    def __init__(self, in_channels: int, out_channels: int, embed_dim: int | None, groups: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.embed_to_scale_shift = None  # embed_dim None: a plain block with nothing to condition on
        if embed_dim is not None:
            self.embed_to_scale_shift = nn.Linear(embed_dim, 2 * out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        # a 1x1 conv lets the skip path change the number of channels; otherwise the skip is the input itself
        self.skip = nn.Identity()
        if in_channels != out_channels:
            self.skip = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, in_channels, H, W), embedding (B, embed_dim) or None -> (B, out_channels, H, W)."""
        h = self.conv1(F.silu(self.norm1(x)))  # (B, in_channels, H, W) -> (B, out_channels, H, W)
        if self.embed_to_scale_shift is None:
            h = self.norm2(h)
        else:
            scale_shift = self.embed_to_scale_shift(F.silu(embedding))  # (B, embed_dim) -> (B, 2 * out_channels)
            scale, shift = scale_shift.chunk(2, dim=1)  # -> 2 x (B, out_channels)
            h = adaptive_group_norm(h, self.norm2, scale, shift)
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """Tokens (B, L, C) -> per-head tokens (B, heads, L, C / heads)."""
    B, L, C = x.shape
    return x.view(B, L, heads, C // heads).transpose(1, 2)  # (B, L, C) -> (B, heads, L, C / heads)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """Per-head tokens (B, heads, L, d) -> tokens (B, L, heads * d)."""
    B, heads, L, d = x.shape
    return x.transpose(1, 2).reshape(B, L, heads * d)  # (B, heads, L, d) -> (B, L, heads * d)


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """A feature map (B, C, H, W) -> its H * W positions as tokens (B, H*W, C); no copy in channels-last layout."""
    B, C, H, W = x.shape
    return x.permute(0, 2, 3, 1).reshape(B, H * W, C)  # (B, C, H, W) -> (B, H, W, C) -> (B, H*W, C)


def from_tokens(tokens: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """Tokens (B, H*W, C) -> the feature map (B, C, H, W), a view stored channels-last (the inverse of to_tokens)."""
    B, _, C = tokens.shape
    return tokens.reshape(B, H, W, C).permute(0, 3, 1, 2)  # (B, H*W, C) -> (B, H, W, C) -> (B, C, H, W)


def pointwise(conv: nn.Conv2d, tokens: torch.Tensor) -> torch.Tensor:
    """A 1x1 convolution applied to tokens (B, L, C_in) -> (B, L, C_out): the same linear map at every position, so
    one matrix product with its weight (C_out, C_in, 1, 1) read as the matrix (C_out, C_in)."""
    return F.linear(tokens, conv.weight.flatten(1), conv.bias)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    r"""Scaled dot-product attention (Vaswani et al. 2017, eq. 1), each head on its own:
    queries q (B, heads, N, d), keys and values k, v (B, heads, L, d), mask (B, L) bool (True = a key that may be
    attended to, False = padding) or None -> (B, heads, N, d).

    Written out rather than F.scaled_dot_product_attention: for the short sequences of this course (cross-attention to
    a caption's L = 10 tokens, the text encoder's 10 and the DiT's 16 tokens) the fused kernel was the slower one on
    this CPU (profiled; the U-Net's, DiT's and text encoder's steps got faster). The scores are computed transposed,
    $(Q K^\top)^\top = K Q^\top$ of shape (B, heads, L, N): each softmax still covers one query's L keys, now a
    column, and the CPU kernel works through the N queries of a row side by side in contiguous memory, many times
    faster than along rows only L = 10 long. For the U-Net's self-attention over 8 x 8 = 64 positions the fused kernel
    is the faster one on one thread, so `SelfAttention` keeps it. Same result up to float rounding
    (tests/nets/test_layers.py). Every row of `mask` needs at least one True: a query with no key to attend to would
    get NaN (the course's encoders always keep their start token).
    """
    d = q.shape[-1]
    # $(Q K^\top / \sqrt{d})^\top = K Q^\top / \sqrt{d}$: entry (j, i) scores key j for query i
    scores_t = k @ (q / math.sqrt(d)).transpose(-1, -2)  # (B, heads, L, d) @ (B, heads, d, N) -> (B, heads, L, N)
    if mask is not None:
        # $+ M$, $M = -\infty$ where key j is padding: its weight becomes exp(-inf) = 0
        scores_t = scores_t.masked_fill(~mask[:, None, :, None], float("-inf"))  # mask (B, L) -> (B, 1, L, 1)
    # $\text{softmax}$ over the keys j, for each query i: each column of weights sums to 1
    weights_t = scores_t.softmax(dim=-2)  # (B, heads, L, N)
    # $\text{Attention}(Q, K, V) = \text{softmax}(Q K^\top / \sqrt{d})\, V$
    return weights_t.transpose(-1, -2) @ v  # (B, heads, N, L) @ (B, heads, L, d) -> (B, heads, N, d)


def check_heads(channels: int, heads: int) -> None:
    """Attention splits the channels evenly among its heads; refuse a split that leaves a remainder."""
    if channels % heads != 0:
        raise ValueError(f"{channels} channels cannot be split into {heads} attention heads; "
                         "choose heads that divide every attended level's channels")


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H * W positions of a feature map, with a residual connection.

    Every position attends to every other, so a pixel can use information from anywhere in the image,
    which convolutions reach only after many layers (Ho et al. 2020 use it at 16 x 16).
    The projections are 1x1 convolutions: the same linear map applied at every position, as in DDPM.
    """

    def __init__(self, channels: int, heads: int, groups: int):
        super().__init__()
        check_heads(channels, heads)
        self.heads = heads
        self.norm = nn.GroupNorm(groups, channels)
        self.to_qkv = nn.Conv2d(channels, 3 * channels, kernel_size=1)  # queries, keys and values in one product
        self.to_out = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) -> (B, C, H, W)."""
        H, W = x.shape[-2:]
        tokens = to_tokens(self.norm(x))  # (B, C, H, W) -> (B, H*W, C)
        q, k, v = pointwise(self.to_qkv, tokens).chunk(3, dim=2)  # (B, H*W, 3C) -> 3 x (B, H*W, C)
        q, k, v = (split_heads(part, self.heads) for part in (q, k, v))  # 3 x (B, heads, H*W, C/heads)
        # $\text{Attention}(Q, K, V) = \text{softmax}(Q K^\top / \sqrt{d})\, V$  (Vaswani et al. 2017, eq. 1)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, H*W, C/heads)
        out = pointwise(self.to_out, merge_heads(out))  # (B, heads, H*W, C/heads) -> (B, H*W, C)
        return x + from_tokens(out, H, W)  # (B, H*W, C) -> (B, C, H, W)


class CrossAttention(nn.Module):
    """Multi-head attention from image positions (queries) to a context sequence (keys, values), e.g. text tokens.

    `context` is (B, L, context_dim); `context_mask` (B, L) is True for real tokens and False for padding,
    which no position may attend to (Rombach et al. 2022, sec. 3.3).
    """

    def __init__(self, channels: int, context_dim: int, heads: int, groups: int):
        super().__init__()
        check_heads(channels, heads)
        self.heads = heads
        self.norm = nn.GroupNorm(groups, channels)
        self.to_q = nn.Conv2d(channels, channels, kernel_size=1)  # 1x1: the same map at every position
        self.to_kv = nn.Linear(context_dim, 2 * channels)  # keys and values in one matrix product
        self.to_out = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, H, W), context (B, L, context_dim), context_mask (B, L) bool or None -> (B, C, H, W)."""
        H, W = x.shape[-2:]
        q = pointwise(self.to_q, to_tokens(self.norm(x)))  # (B, C, H, W) -> (B, H*W, C)
        q = split_heads(q, self.heads)  # (B, H*W, C) -> (B, heads, H*W, C/heads)
        k, v = self.to_kv(context).chunk(2, dim=2)  # (B, L, context_dim) -> 2 x (B, L, C)
        k, v = split_heads(k, self.heads), split_heads(v, self.heads)  # (B, L, C) -> (B, heads, L, C/heads)
        # $\text{softmax}(Q K^\top / \sqrt{d} + M)\, V$, $M = -\infty$ at padding tokens (Rombach et al. 2022, sec. 3.3)
        out = attention(q, k, v, context_mask)  # (B, heads, H*W, C/heads), no weight on padding tokens
        out = pointwise(self.to_out, merge_heads(out))  # (B, heads, H*W, C/heads) -> (B, H*W, C)
        return x + from_tokens(out, H, W)  # (B, H*W, C) -> (B, C, H, W)


class Downsample(nn.Module):
    """Halve height and width with a stride-2 3x3 conv (Ho et al. 2020): (B, C, H, W) -> (B, C, H/2, W/2)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)  # (B, C, H, W) -> (B, C, H/2, W/2)


class Upsample(nn.Module):
    """Double height and width: nearest-neighbour copy, then a 3x3 conv to smooth it (Ho et al. 2020)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")  # (B, C, H, W) -> (B, C, 2H, 2W)
        return self.conv(x)
