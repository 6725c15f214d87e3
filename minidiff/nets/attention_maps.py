r"""Where does each word look? Cross-attention maps, recorded while a model samples.

Every cross-attention layer (minidiff.nets.layers.CrossAttention) lets each image position $i$ take a weighted
average of the token vectors, with weights $A_{ij} = \mathrm{softmax}_j(Q_i \cdot K_j / \sqrt{d})$
(Rombach et al. 2022, sec. 3.3). Column $j$ of $A$, laid out on the image grid, is a map of where token $j$ acts.
Hertz et al. 2022 ("Prompt-to-Prompt", sec. 3.1) show such maps, averaged over heads and layers, and upsampled.

`CrossAttentionRecorder` does that without touching the model: a forward hook on each CrossAttention layer (for a
diffusion transformer, each block's cross-attention over its patch tokens, `token_attention_weights`) recomputes the softmax weights from the layer's own inputs and projections (the layer itself calls PyTorch's fused
attention, which never materialises them) and keeps their mean over heads.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from minidiff.nets.dit import DiTBlock, TokenAttention
from minidiff.nets.layers import CrossAttention, split_heads


def attention_weights(layer: CrossAttention, x: torch.Tensor, context: torch.Tensor,
                      context_mask: torch.Tensor | None) -> torch.Tensor:
    """The layer's attention weights for these inputs, averaged over heads: (B, L, H, W), summing to 1 over L."""
    B, C, H, W = x.shape
    q = split_heads(layer.to_q(layer.norm(x)).flatten(2).transpose(1, 2), layer.heads)  # (B, heads, H*W, C/heads)
    k = split_heads(layer.to_kv(context).chunk(2, dim=2)[0], layer.heads)  # (B, heads, L, C/heads)
    # $A = \mathrm{softmax}(Q K^\top / \sqrt{d})$, with $-\infty$ at padding tokens
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (B, heads, H*W, L)
    if context_mask is not None:
        scores = scores.masked_fill(~context_mask[:, None, None, :], float("-inf"))
    weights = scores.softmax(dim=-1).mean(dim=1)  # (B, heads, H*W, L) -> (B, H*W, L)
    return weights.transpose(1, 2).reshape(B, -1, H, W)  # (B, H*W, L) -> (B, L, H, W)


def token_attention_weights(layer: TokenAttention, x: torch.Tensor, context: torch.Tensor,
                            context_mask: torch.Tensor | None) -> torch.Tensor:
    """A DiT block's cross-attention weights over its N patch tokens x (B, N, dim), laid out on the square grid of
    patches and averaged over heads: (B, L, h, w), h = w = sqrt(N), summing to 1 over L."""
    B, N, _ = x.shape
    side = math.isqrt(N)
    if side * side != N:
        raise ValueError(f"attention maps of a DiT need a square grid of patches, got {N} tokens")
    q, k = split_heads(layer.to_q(x), layer.heads), split_heads(layer.to_kv(context).chunk(2, dim=2)[0], layer.heads)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (B, heads, N, L)
    if context_mask is not None:
        scores = scores.masked_fill(~context_mask[:, None, None, :], float("-inf"))
    weights = scores.softmax(dim=-1).mean(dim=1)  # (B, heads, N, L) -> (B, N, L)
    return weights.transpose(1, 2).reshape(B, -1, side, side)  # (B, N, L) -> (B, L, h, w)


class CrossAttentionRecorder:
    """with CrossAttentionRecorder(model) as recorder: ... -> recorder.maps, one entry per network call.

    Each entry is (B, L, size, size): the attention of every token over the image, averaged over heads and over
    all cross-attention layers, each layer's map upsampled (bilinear) to size x size first.
    """

    def __init__(self, model: nn.Module, size: int = 32):
        self.layers = [module for module in model.modules() if isinstance(module, CrossAttention)]
        self.layers += [block.cross_attention for block in model.modules()
                        if isinstance(block, DiTBlock) and block.cross_attention is not None]
        if not self.layers:
            raise ValueError("this model has no cross-attention layers: nothing to record")
        self.size = size
        self.maps: list[torch.Tensor] = []
        self.pending: list[torch.Tensor] = []  # this network call's layers so far
        self.hooks = []

    def __enter__(self) -> "CrossAttentionRecorder":
        self.hooks = [layer.register_forward_hook(self.record) for layer in self.layers]
        return self

    def __exit__(self, *exc) -> None:
        for hook in self.hooks:
            hook.remove()

    def record(self, layer: CrossAttention | TokenAttention, inputs: tuple, output: torch.Tensor) -> None:
        x, context, context_mask = (*inputs, None)[:3]
        read = attention_weights if isinstance(layer, CrossAttention) else token_attention_weights
        with torch.no_grad():
            weights = read(layer, x, context, context_mask)  # (B, L, h, w)
            upsampled = F.interpolate(weights, size=(self.size, self.size), mode="bilinear", align_corners=False)
        self.pending.append(upsampled.float().cpu())
        if len(self.pending) == len(self.layers):  # every layer has run: one network call is complete
            self.maps.append(torch.stack(self.pending).mean(dim=0))  # (layers, B, L, size, size) -> (B, L, size, size)
            self.pending = []
