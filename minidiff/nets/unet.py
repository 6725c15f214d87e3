"""The U-Net that predicts the noise (or x0, or v) in x_t, conditioned on t, a class label and/or a text context.

Layout (Ho et al. 2020, appendix B; Dhariwal & Nichol 2021; Ronneberger et al. 2015 for the U shape):

    x_t -> conv_in -> [level 0: blocks] -> down -> [level 1: blocks] -> down -> ... -> middle
        -> ... -> up -> [level 1: blocks + skips] -> up -> [level 0: blocks + skips] -> norm, SiLU, conv_out

Each level runs `blocks_per_level` blocks at one resolution (ResBlock, then self- and cross-attention at the levels
that have them) and keeps every output for the way up, where each block first concatenates one of them
(the skip connections). The way up has one extra block per level, for the output of the down- or input conv.

Conditioning: t -> sinusoidal embedding -> MLP (+ a learned class embedding) = one vector per sample that every
ResBlock reads (AdaGN). Class index `num_classes` is the "null class" that classifier-free guidance
(Ho & Salimans 2022) trains with and samples against. A text context enters through cross-attention.
"""

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from minidiff.nets.layers import (
    CrossAttention,
    Downsample,
    ResBlock,
    SelfAttention,
    Upsample,
    check_conditioning,
    timestep_embedding,
)


@dataclass
class UNetConfig:
    in_channels: int = 1  # MNIST is grey
    out_channels: int | None = None  # None = same as in_channels: the prediction has the image's shape
    channels: tuple[int, ...] = (32, 64, 128)  # per level, doubling as in DDPM; 3 levels take 28 -> 14 -> 7
    blocks_per_level: int = 2  # ResBlocks per level on the way down (DDPM uses 2)
    attention_levels: tuple[bool, ...] = (False, False, True)  # self-attention only where H*W is small (7x7)
    heads: int = 4  # attention heads; 128 channels -> 4 heads of 32
    dropout: float = 0.1  # DDPM's CIFAR-10 value; small data sets overfit without it
    num_classes: int | None = None  # class conditioning; index num_classes is the null class (CFG)
    context_dim: int | None = None  # width of a cross-attention context (text); None = no cross-attention.
    # Cross-attention sits at the same levels as self-attention, and in the middle.
    groups: int = 8  # GroupNorm groups; DDPM's 32 would leave one channel per group at 32 channels
    time_embed_dim: int | None = None  # None = 4 * channels[0], as in DDPM
    time_scale: float = 1.0  # the embedding reads time_scale * t: 1 for steps 0 ... T-1, 1000 for a flow t in [0, 1] (SD3)

    def __post_init__(self):
        for name in ("in_channels", "blocks_per_level", "heads", "groups"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        if isinstance(self.channels, (str, int)) or not self.channels:
            raise ValueError(f"channels must list the width of each level, e.g. (32, 64), got {self.channels!r}")
        self.channels = tuple(self.channels)  # lists (e.g. from JSON) become tuples
        self.attention_levels = tuple(bool(a) for a in self.attention_levels)
        if len(self.attention_levels) != len(self.channels):
            raise ValueError(f"attention_levels has {len(self.attention_levels)} entries but channels has "
                             f"{len(self.channels)} levels; give one True/False per level")
        if self.channels[0] % 2 != 0:
            raise ValueError(f"channels[0] = {self.channels[0]} must be even: it is also the width of the sinusoidal "
                             "time embedding (half sines, half cosines)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout is a probability in [0, 1), got {self.dropout}")
        if self.blocks_per_level < 1:
            raise ValueError(f"blocks_per_level must be at least 1, got {self.blocks_per_level}")
        for c in self.channels:
            if c % self.groups != 0:
                raise ValueError(f"{c} channels cannot be split into {self.groups} GroupNorm groups; "
                                 "choose channels that are multiples of groups")
        for c in self.attended_channels():
            if c % self.heads != 0:
                raise ValueError(f"{c} channels cannot be split into {self.heads} attention heads; "
                                 "choose heads that divide the channels of every level with attention")
        if not self.time_scale > 0:
            raise ValueError(f"time_scale multiplies t before its embedding and must be positive, got {self.time_scale}")
        if self.num_classes is not None and self.num_classes < 1:
            raise ValueError(f"num_classes must be a positive number of classes or None, got {self.num_classes}")

    def attended_channels(self) -> list[int]:
        """Channels of every place with attention: the levels marked in attention_levels, and the middle."""
        return [c for c, a in zip(self.channels, self.attention_levels) if a] + [self.channels[-1]]

    @property
    def levels(self) -> int:
        return len(self.channels)

    @property
    def output_channels(self) -> int:
        return self.in_channels if self.out_channels is None else self.out_channels

    @property
    def embed_dim(self) -> int:
        return 4 * self.channels[0] if self.time_embed_dim is None else self.time_embed_dim

    def to_dict(self) -> dict:
        """A JSON-ready dict (tuples become lists in JSON; `from_dict` turns them back)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "UNetConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if "prediction" in unknown:
            raise ValueError("this U-Net config has a 'prediction' field: what the network predicts is a diffusion "
                             "setting now (DiffusionConfig); convert an old checkpoint once with "
                             "scripts/convert_checkpoints.py")
        if unknown:
            raise ValueError(f"unknown UNetConfig fields {sorted(unknown)}; known fields are {sorted(known)}")
        return cls(**d)


class UNetBlock(nn.Module):
    """One block of a level: a ResBlock, then self-attention and cross-attention where the config asks for them."""

    def __init__(self, in_channels: int, out_channels: int, attention: bool, config: UNetConfig):
        super().__init__()
        self.res = ResBlock(in_channels, out_channels, config.embed_dim, config.groups, config.dropout)
        self.attention = SelfAttention(out_channels, config.heads, config.groups) if attention else None
        self.cross_attention = None
        if attention and config.context_dim is not None:
            self.cross_attention = CrossAttention(out_channels, config.context_dim, config.heads, config.groups)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, in_channels, H, W), embedding (B, embed_dim) -> (B, out_channels, H, W)."""
        h = self.res(x, embedding)  # (B, in_channels, H, W) -> (B, out_channels, H, W)
        if self.attention is not None:
            h = self.attention(h)
        if self.cross_attention is not None:
            h = self.cross_attention(h, context, context_mask)
        return h


class UNet(nn.Module):
    """x_t (B, C, H, W), t (B,) -> the prediction (B, out_channels, H, W). H and W must divide by 2**(levels-1)."""

    def __init__(self, config: UNetConfig | None = None):
        super().__init__()
        config = config or UNetConfig()
        self.config = config
        channels, levels, embed_dim = config.channels, config.levels, config.embed_dim

        # conditioning: t -> sinusoidal features -> MLP; + a learned vector per class (the last row is the null class)
        self.time_mlp = nn.Sequential(nn.Linear(channels[0], embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim))
        self.class_embedding = None
        if config.num_classes is not None:
            self.class_embedding = nn.Embedding(config.num_classes + 1, embed_dim)

        self.conv_in = nn.Conv2d(config.in_channels, channels[0], kernel_size=3, padding=1)

        # way down: remember the channels of every output that will be a skip connection
        skip_channels = [channels[0]]
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()  # downsample[level]: level -> level + 1
        c = channels[0]
        for level in range(levels):
            blocks = nn.ModuleList()
            for _ in range(config.blocks_per_level):
                blocks.append(UNetBlock(c, channels[level], config.attention_levels[level], config))
                c = channels[level]
                skip_channels.append(c)
            self.down.append(blocks)
            if level < levels - 1:
                self.downsample.append(Downsample(c))
                skip_channels.append(c)

        # middle, at the lowest resolution: ResBlock + attention, then ResBlock
        self.middle_attention_block = UNetBlock(c, c, attention=True, config=config)
        self.middle_res_block = ResBlock(c, c, embed_dim, config.groups, config.dropout)

        # way up: one more block per level than on the way down, each eating one skip connection
        up = [None] * levels
        for level in reversed(range(levels)):
            blocks = nn.ModuleList()
            for _ in range(config.blocks_per_level + 1):
                c_in = c + skip_channels.pop()
                blocks.append(UNetBlock(c_in, channels[level], config.attention_levels[level], config))
                c = channels[level]
            up[level] = blocks
        self.up = nn.ModuleList(up)
        # upsample[level]: level + 1 -> level, the mirror of downsample[level]
        self.upsample = nn.ModuleList([Upsample(channels[level + 1]) for level in range(levels - 1)])

        self.norm_out = nn.GroupNorm(config.groups, channels[0])
        self.conv_out = nn.Conv2d(channels[0], config.output_channels, kernel_size=3, padding=1)

    def embed(self, t: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """The conditioning vector (B, embed_dim): MLP(sinusoidal(t)) + class embedding (null class when None)."""
        embedding = self.time_mlp(timestep_embedding(self.config.time_scale * t, self.config.channels[0]))  # (B, embed)
        if self.class_embedding is not None:
            if class_labels is None:
                class_labels = torch.full_like(t, self.config.num_classes, dtype=torch.long)  # the null class
            embedding = embedding + self.class_embedding(class_labels)  # (B,) -> (B, embed_dim)
        return embedding

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None,
                context: torch.Tensor | None = None, context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Predict eps, x0 or v for x_t (B, C, H, W) at 0-based steps t (B,), whichever the model was trained for
        (`minidiff.diffusion.config.DiffusionConfig.prediction`: a diffusion setting, not the network's).

        class_labels: (B,) ints in 0 ... num_classes, where num_classes is the null class (also used when None).
        context: (B, L, context_dim), e.g. text token features; context_mask: (B, L) bool, True = real token.
        """
        self.check_inputs(x_t, t, class_labels, context, context_mask)
        levels = self.config.levels
        embedding = self.embed(t, class_labels)  # (B, embed_dim)

        # 1. way down, keeping each output as a skip connection
        h = self.conv_in(x_t)  # (B, C, H, W) -> (B, channels[0], H, W)
        # Same shape, but stored pixel by pixel (B, H, W, C in memory): oneDNN's CPU convolutions, upsampling and
        # attention's (B, H*W, C) tokens are faster in this "channels last" layout, and every later layer keeps it.
        h = h.contiguous(memory_format=torch.channels_last)
        skips = [h]
        for level in range(levels):
            for block in self.down[level]:
                h = block(h, embedding, context, context_mask)  # -> (B, channels[level], H_level, W_level)
                skips.append(h)
            if level < levels - 1:
                h = self.downsample[level](h)  # (B, c, H_level, W_level) -> (B, c, H_level / 2, W_level / 2)
                skips.append(h)

        # 2. middle
        h = self.middle_attention_block(h, embedding, context, context_mask)
        h = self.middle_res_block(h, embedding)

        # 3. way up, each block first concatenating the latest unused skip connection
        for level in reversed(range(levels)):
            if level < levels - 1:
                h = self.upsample[level](h)  # (B, c, H_level / 2, W_level / 2) -> (B, c, H_level, W_level)
            for block in self.up[level]:
                h = torch.cat([h, skips.pop()], dim=1)  # (B, c, ...) + (B, c_skip, ...) -> (B, c + c_skip, ...)
                h = block(h, embedding, context, context_mask)  # -> (B, channels[level], H_level, W_level)

        # 4. back to image channels
        h = F.silu(self.norm_out(h))
        out = self.conv_out(h)  # (B, channels[0], H, W) -> (B, out_channels, H, W)
        return out.contiguous()  # back to the usual memory layout, so callers may .view() it

    def check_inputs(self, x_t, t, class_labels, context, context_mask) -> None:
        """Raise a ValueError that says what is wrong and what to pass instead."""
        config = self.config
        if x_t.ndim != 4 or x_t.shape[1] != config.in_channels:
            raise ValueError(f"x_t must be (B, {config.in_channels}, H, W), got {tuple(x_t.shape)}")
        B, _, H, W = x_t.shape
        factor = 2 ** (config.levels - 1)
        if H % factor != 0 or W % factor != 0:
            raise ValueError(f"H and W must be divisible by 2**(levels - 1) = {factor} for {config.levels} levels, "
                             f"got {H} x {W}; pad the image or use fewer levels")
        check_conditioning(config, B, t, class_labels, context, context_mask)


def count_parameters(model: nn.Module) -> int:
    """The number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def shapes_per_level(model: UNet, x_t: torch.Tensor, t: torch.Tensor, **conditioning) -> list[tuple[str, tuple, tuple]]:
    """Run the model once and list (block name, input shape, output shape) for every block, in the order they run.

    Names follow the modules: "down.1.0" is block 0 of level 1, "upsample.0" brings level 1 up to level 0.
    """
    recorded = []

    def record(name):
        return lambda module, inputs, output: recorded.append((name, tuple(inputs[0].shape), tuple(output.shape)))

    watched = [(name, module) for name, module in model.named_modules()
               if isinstance(module, (UNetBlock, Downsample, Upsample))
               or name in ("conv_in", "middle_res_block", "conv_out")]
    hooks = [module.register_forward_hook(record(name)) for name, module in watched]
    try:
        with torch.inference_mode():
            model(x_t, t, **conditioning)
    finally:
        for hook in hooks:
            hook.remove()
    return recorded
