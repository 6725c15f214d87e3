r"""A diffusion transformer (DiT): the image cut into patches, the patches read as tokens by a stack of transformer
blocks, each block told the timestep by adaLN-Zero. A drop-in for the U-Net: the same forward(x_t, t, class_labels,
context, context_mask), the same prediction out.

    x_t (B, C, H, W) -> patches (B, N, p*p*C) -> linear -> + 2-D sin-cos positions -> tokens (B, N, dim)
        -> depth x [adaLN-Zero self-attention, cross-attention to the text, adaLN-Zero MLP]
        -> final adaLN, linear -> (B, N, p*p*C_out) -> unpatchify -> (B, C_out, H, W)

Choices, and why:
- Patchify by reshape + linear, not by a convolution with kernel and stride p. The two compute the same map (a
  stride-p p x p convolution is one linear map applied to each patch's p*p*C numbers), but the reshape keeps the
  tokens visible, and `unpatchify` is its exact mirror, so the round trip is a test of two reshapes.
- Position: fixed 2-D sin-cos embeddings (Peebles & Xie 2023, sec. 3.1, after MAE): half the width encodes the
  patch's row, half its column, each with the sinusoids of `timestep_embedding`. Nothing to learn, any grid size.
- Conditioning: adaLN-Zero (Peebles & Xie 2023, sec. 3.2). The timestep's embedding (plus a class embedding, or the
  mean of the text tokens, "pooled text" as in SD3) is one vector e per sample (`embedding`, as in the U-Net; the
  paper's c); from it each block regresses a shift, scale and gate for its two sub-layers. The gates start at zero,
  so every block starts as the identity; the last layer starts at zero too, so the initial output is 0, and the
  first gradients reach the last layer only, the blocks opening as it grows.
- Text: cross-attention from the image tokens to the caption's tokens, after self-attention, as in PixArt-alpha
  (Chen et al. 2024, sec. 2.3). SD3's joint attention (Esser et al. 2024, sec. 4) would instead run text and image
  tokens through one attention with separate weights, updating the text too: better for long prompts and large
  models, but it doubles every block's weights and makes a second stream. Our captions are a few words already
  encoded by their own transformer, and cross-attention is what the U-Net does (chapter 11), so the comparison of
  the two backbones changes one thing: convolutions at several resolutions against attention over patches. The
  cross-attention's output projection starts at zero too, so the block is the identity at init all the same.

Papers: Peebles & Xie 2023, "Scalable Diffusion Models with Transformers" (DiT); Vaswani et al. 2017 (attention,
sinusoids); Dosovitskiy et al. 2021 (ViT: patches as tokens); Chen et al. 2024 (PixArt-alpha); Esser et al. 2024 (SD3).
"""

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from minidiff.nets.layers import (
    attention,
    check_conditioning,
    check_heads,
    merge_heads,
    split_heads,
    timestep_embedding,
)


@dataclass
class DiTConfig:
    in_channels: int = 4  # the Shapes latents: 4 channels of 8 x 8
    out_channels: int | None = None  # None = same as in_channels: the prediction has the input's shape
    patch_size: int = 2  # p: an 8 x 8 latent becomes 4 x 4 = 16 tokens (DiT's best models use p = 2)
    dim: int = 128  # the width of every token
    depth: int = 6  # transformer blocks (DiT-S has 12 of width 384; ours are sized for a CPU)
    heads: int = 4  # attention heads; 128 wide -> 4 heads of 32
    mlp_ratio: float = 4.0  # the MLP's hidden width, as a multiple of dim (Vaswani et al. 2017)
    num_classes: int | None = None  # class conditioning; index num_classes is the null class (CFG)
    context_dim: int | None = None  # width of the text context read by cross-attention; None = no text
    time_scale: float = 1.0  # the embedding reads time_scale * t: 1000 for a rectified-flow t in [0, 1] (UNetConfig)

    def __post_init__(self):
        if self.patch_size < 1 or self.depth < 1:
            raise ValueError(f"patch_size and depth must be at least 1, got {self.patch_size} and {self.depth}")
        if self.dim % 4 != 0:
            raise ValueError(f"dim must be a multiple of 4, got {self.dim}: the 2-D position embedding gives half "
                             "its width to rows and half to columns, each half sines and half cosines")
        check_heads(self.dim, self.heads)
        if not self.time_scale > 0:
            raise ValueError(f"time_scale multiplies t before its embedding and must be positive, "
                             f"got {self.time_scale}")
        if self.num_classes is not None and self.num_classes < 1:
            raise ValueError(f"num_classes must be a positive number of classes or None, got {self.num_classes}")

    @property
    def output_channels(self) -> int:
        return self.in_channels if self.out_channels is None else self.out_channels

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DiTConfig":
        known = {f.name for f in fields(cls)}
        if set(d) - known:
            raise ValueError(f"unknown DiTConfig fields {sorted(set(d) - known)}; known fields are {sorted(known)}")
        return cls(**d)


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """Images (B, C, H, W) -> patches (B, N, p*p*C), N = (H/p) (W/p), row by row; each patch's numbers are ordered
    (row in patch, column in patch, channel)."""
    B, C, H, W = x.shape
    x = x.reshape(B, C, H // p, p, W // p, p)  # (B, C, H, W) -> (B, C, h, p, w, p), h = H/p, w = W/p
    x = x.permute(0, 2, 4, 3, 5, 1)  # (B, C, h, p, w, p) -> (B, h, w, p, p, C)
    return x.reshape(B, (H // p) * (W // p), p * p * C)  # (B, h, w, p, p, C) -> (B, N, p*p*C)


def unpatchify(patches: torch.Tensor, p: int, h: int, w: int) -> torch.Tensor:
    """The inverse of `patchify`: patches (B, N = h*w, p*p*C) -> images (B, C, h*p, w*p)."""
    B, N, D = patches.shape
    C = D // (p * p)
    x = patches.reshape(B, h, w, p, p, C)  # (B, N, p*p*C) -> (B, h, w, p, p, C)
    x = x.permute(0, 5, 1, 3, 2, 4)  # (B, h, w, p, p, C) -> (B, C, h, p, w, p)
    return x.reshape(B, C, h * p, w * p)  # (B, C, h, p, w, p) -> (B, C, H, W)


def position_embedding_2d(h: int, w: int, dim: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Fixed 2-D sin-cos embeddings (N = h*w, dim) of a grid of h x w patches, row by row: the first dim/2 numbers
    are the sinusoids of the row index, the last dim/2 those of the column (Peebles & Xie 2023, sec. 3.1)."""
    rows = torch.arange(h, device=device).repeat_interleave(w)  # (N,): 0, 0, ..., 1, 1, ...
    columns = torch.arange(w, device=device).repeat(h)  # (N,): 0, 1, ..., 0, 1, ...
    # $e(i, j) = [\mathrm{sincos}(i), \mathrm{sincos}(j)]$, each $\mathrm{sincos}$ dim/2 wide
    return torch.cat([timestep_embedding(rows, dim // 2), timestep_embedding(columns, dim // 2)], dim=1)  # (N, dim)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    r"""adaLN: tokens (B, N, dim) scaled and shifted per sample by shift, scale (B, dim): $x (1 + \gamma) + \beta$."""
    return x * (1 + scale[:, None, :]) + shift[:, None, :]  # (B, dim) -> (B, 1, dim), broadcast over N


class TokenAttention(nn.Module):
    """Multi-head attention from tokens (B, N, dim) to a sequence (B, L, context_dim): self-attention when the
    sequence is the tokens themselves (context_dim None), cross-attention to a text otherwise. No norm and no
    residual inside: the block puts adaLN before it and a gate after it."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None):
        super().__init__()
        check_heads(dim, heads)
        self.heads = heads
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(dim if context_dim is None else context_dim, 2 * dim)  # keys and values at once
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, N, dim), context (B, L, context_dim) or None (= x), context_mask (B, L) True = real -> (B, N, dim)."""
        q = split_heads(self.to_q(x), self.heads)  # (B, N, dim) -> (B, heads, N, dim / heads)
        k, v = self.to_kv(x if context is None else context).chunk(2, dim=2)  # -> 2 x (B, L, dim)
        k, v = split_heads(k, self.heads), split_heads(v, self.heads)  # -> (B, heads, L, dim / heads)
        # Vaswani et al. 2017, eq. 1: $\mathrm{softmax}(Q K^\top / \sqrt{d} + M)\, V$, $M = -\infty$ at padding
        out = attention(q, k, v, context_mask)  # (B, heads, N, dim / heads), no weight on padding tokens
        return self.to_out(merge_heads(out))  # (B, heads, N, dim / heads) -> (B, N, dim)


class DiTBlock(nn.Module):
    """adaLN-Zero self-attention, cross-attention to the text (if any), adaLN-Zero MLP; each added to the tokens."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        dim = config.dim
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)  # adaLN brings the scale and shift
        self.attention = TokenAttention(dim, config.heads)
        self.cross_attention = None
        if config.context_dim is not None:
            self.cross_norm = nn.LayerNorm(dim)  # a plain pre-LN: the text, not the timestep, steers this one
            self.cross_attention = TokenAttention(dim, config.heads, config.context_dim)
            nn.init.zeros_(self.cross_attention.to_out.weight)  # starts as no change, like the gated sub-layers
            nn.init.zeros_(self.cross_attention.to_out.bias)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * config.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        # e -> shift, scale, gate for attention and for the MLP; all zero at init ("Zero"): the block is the identity
        self.modulation = nn.Linear(dim, 6 * dim)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, N, dim), embedding (B, dim) -> (B, N, dim)."""
        parameters = self.modulation(F.silu(embedding)).chunk(6, dim=1)  # (B, dim) -> 6 x (B, dim)
        shift_attention, scale_attention, gate_attention, shift_mlp, scale_mlp, gate_mlp = parameters
        # Peebles & Xie 2023, sec. 3.2 (their $\alpha, \gamma, \beta$: gate, scale, shift):
        # $x \leftarrow x + \mathrm{gate}_1 \odot \mathrm{Attn}(a)$,
        # $a = \mathrm{LN}(x)\,(1 + \mathrm{scale}_1) + \mathrm{shift}_1$
        h = self.attention(modulate(self.norm1(x), shift_attention, scale_attention))
        x = x + gate_attention[:, None, :] * h  # (B, dim) -> (B, 1, dim), broadcast over N
        if self.cross_attention is not None:
            # Chen et al. 2024 (PixArt-alpha), sec. 2.3: $x \leftarrow x + \mathrm{CrossAttn}(\mathrm{LN}(x), c)$
            x = x + self.cross_attention(self.cross_norm(x), context, context_mask)
        # the same for the MLP: $x \leftarrow x + \mathrm{gate}_2 \odot \mathrm{MLP}(a')$,
        # $a' = \mathrm{LN}(x)\,(1 + \mathrm{scale}_2) + \mathrm{shift}_2$
        h = self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x + gate_mlp[:, None, :] * h  # (B, dim) -> (B, 1, dim), broadcast over N


class DiT(nn.Module):
    """x_t (B, C, H, W), t (B,) -> the prediction (B, out_channels, H, W). H and W must divide by patch_size."""

    def __init__(self, config: DiTConfig | None = None):
        super().__init__()
        config = config or DiTConfig()
        self.config = config
        dim, p = config.dim, config.patch_size
        self.patch_embedding = nn.Linear(p * p * config.in_channels, dim)  # one linear map per patch (a stride-p conv)
        # the conditioning vector e: t -> sinusoidal features -> MLP; + a class vector (the last row is the null
        # class), or + the text's pooled tokens projected to dim
        self.time_mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.class_embedding = None
        if config.num_classes is not None:
            self.class_embedding = nn.Embedding(config.num_classes + 1, dim)
        self.pooled_context = None if config.context_dim is None else nn.Linear(config.context_dim, dim)
        self.blocks = nn.ModuleList([DiTBlock(config) for _ in range(config.depth)])
        # final layer: adaLN (shift and scale from e), then a linear map back to a patch's p*p*C_out numbers; zero
        self.norm_out = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.modulation_out = nn.Linear(dim, 2 * dim)
        self.to_patches = nn.Linear(dim, p * p * config.output_channels)
        for layer in (self.modulation_out, self.to_patches):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def embed(self, t: torch.Tensor, class_labels: torch.Tensor | None = None, context: torch.Tensor | None = None,
              context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The conditioning vector e (B, dim): MLP(sinusoidal(t)) + the class's vector (null class when None) or the
        projected mean of the context's real tokens."""
        features = timestep_embedding(self.config.time_scale * t, self.config.dim)  # (B,) -> (B, dim)
        embedding = self.time_mlp(features)  # (B, dim) -> (B, dim)
        if self.class_embedding is not None:
            if class_labels is None:
                class_labels = torch.full_like(t, self.config.num_classes, dtype=torch.long)  # the null class
            embedding = embedding + self.class_embedding(class_labels)  # (B,) -> (B, dim)
        if self.pooled_context is not None:
            real = torch.ones(context.shape[:2], device=context.device) if context_mask is None else context_mask
            weights = real.float()[:, :, None] / real.float().sum(dim=1)[:, None, None]  # (B, L) -> (B, L, 1)
            # $\bar c = \sum_{j \text{ real}} c_j / \#\{j \text{ real}\}$: the mean of the real tokens, padding left out
            pooled = (weights * context).sum(dim=1)  # (B, L, context_dim) -> (B, context_dim)
            embedding = embedding + self.pooled_context(pooled)  # (B, context_dim) -> (B, dim)
        return embedding

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None,
                context: torch.Tensor | None = None, context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Predict eps, x0, v or the flow velocity for x_t (B, C, H, W) at t (B,), as the U-Net does
        (`minidiff.nets.unet.UNet.forward`: the same arguments, the same meaning)."""
        config, p = self.config, self.config.patch_size
        if x_t.ndim != 4 or x_t.shape[1] != config.in_channels:
            raise ValueError(f"x_t must be (B, {config.in_channels}, H, W), got {tuple(x_t.shape)}")
        B, _, H, W = x_t.shape
        if H % p != 0 or W % p != 0:
            raise ValueError(f"H and W must be divisible by patch_size = {p}, got {H} x {W}; pad the image or "
                             "choose a patch size that divides both")
        check_conditioning(config, B, t, class_labels, context, context_mask)
        embedding = self.embed(t, class_labels, context, context_mask)  # (B, dim)

        # 1. patches as tokens, each told where it sits
        tokens = self.patch_embedding(patchify(x_t, p))  # (B, C, H, W) -> (B, N, p*p*C) -> (B, N, dim)
        tokens = tokens + position_embedding_2d(H // p, W // p, config.dim, x_t.device)  # + (N, dim)
        # 2. the blocks
        for block in self.blocks:
            tokens = block(tokens, embedding, context, context_mask)  # (B, N, dim)
        # 3. final adaLN and linear, back to patches, back to an image
        shift, scale = self.modulation_out(F.silu(embedding)).chunk(2, dim=1)  # (B, dim) -> 2 x (B, dim)
        patches = self.to_patches(modulate(self.norm_out(tokens), shift, scale))  # (B, N, dim) -> (B, N, p*p*C_out)
        return unpatchify(patches, p, H // p, W // p)  # (B, N, p*p*C_out) -> (B, C_out, H, W)
