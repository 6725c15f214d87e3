r"""Editing instead of drawing from scratch: start from an image (SDEdit), or regenerate part of it (inpainting).

Papers followed:
- Meng et al. 2022, "SDEdit: Guided Image Synthesis and Editing with Stochastic Differential Equations", sec. 3:
  noise the input to an intermediate step $t_0$ with the forward process, $x_{t_0} = \sqrt{\bar\alpha_{t_0}}\,x_0 +
  \sqrt{1-\bar\alpha_{t_0}}\,\epsilon$, and run the reverse process from there. The strength, in [0, 1], is the share
  of the sampler's steps that run, and $t_0$ the first of them: strength 0 returns the input, strength 1 starts
  from (almost) pure noise.
- Lugmayr et al. 2022, "RePaint", eq. 8 (and Song et al. 2021b, app. I.2, before them): inpainting with an
  unconditional sampler. A mask $m$ marks the region to regenerate (1) and the region to keep (0). Before every
  step, the kept region is overwritten with the input noised to the current step,
  $x_t \leftarrow (1 - m) \odot q(x_t \mid x_0) + m \odot x_t$, so the model fills the masked region in a way that
  agrees with it. After the last step the kept region is the input itself. (RePaint's own mask $m$ is 1 where the
  input is known: our $1 - m$.)

Every sampler in `minidiff.diffusion.samplers` takes an `Edit`: `starting_point` gives its x_T and timesteps, and the
sampling loop calls `keep_known` before every step. The pipeline (`minidiff.pipeline.TextToImage.edit`) builds one
from an image and a mask, in latent space (the mask shrunk to the latent grid by `latent_mask`); the image and
mask files are read by `minidiff.files.images`. A mask means the same everywhere: 1 = regenerate, 0 = keep.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from minidiff.diffusion.arguments import generator_or_none, image_batch, real_number
from minidiff.diffusion.schedule import NoiseSchedule, alpha_bar_at


@dataclass
class Edit:
    """What to start from and what to regenerate. mask: 1 where the input is regenerated, 0 where it is kept."""

    x0: torch.Tensor  # (B, C, H, W) the input, in the space the model denoises (a latent for latent models)
    strength: float = 1.0  # share of the sampler's steps that run
    mask: torch.Tensor | None = None  # (B or 1, 1, H, W) in [0, 1], 1 = regenerate; None: no mask (plain SDEdit)
    generator: torch.Generator | None = None  # the fresh noise that re-noises the kept region at every step

    def __post_init__(self):
        image_batch("x0", self.x0)
        self.strength = real_number("strength", self.strength, 0.0, 1.0, what="0 = return the input, 1 = ignore it")
        generator_or_none("generator", self.generator)
        if self.mask is not None:
            check_mask(self.mask, self.x0)


def check_mask(mask: torch.Tensor, x0: torch.Tensor) -> None:
    """A mask (B or 1, 1, H, W) like the input's batch and size, with values in [0, 1] (1 = regenerate)."""
    image_batch("mask", mask, layout="(B or 1, 1, H, W) in [0, 1]")
    H, W = x0.shape[-2:]
    if mask.shape[1] != 1 or mask.shape[-2:] != x0.shape[-2:] or mask.shape[0] not in (1, len(x0)):
        raise ValueError(f"the mask must be (1, 1, {H}, {W}) or ({len(x0)}, 1, {H}, {W}) like the input, "
                         f"got {tuple(mask.shape)}")
    low, high = float(mask.min()), float(mask.max())
    if not 0.0 <= low <= high <= 1.0:  # NaN fails too
        raise ValueError(f"the mask's values must lie in [0, 1] (1 = regenerate, 0 = keep), got values from {low:g} "
                         f"to {high:g}; divide an 8-bit mask (0 ... 255) by 255")


def starting_point(noise: torch.Tensor, timesteps: list, schedule: NoiseSchedule,
                   edit: Edit | None) -> tuple[torch.Tensor, list]:
    """x_T and the timesteps to run: pure noise and all of them, or (SDEdit) the input noised to the first of the
    last round(strength * S) timesteps, and those."""
    if edit is None:
        return noise, timesteps
    kept = timesteps[len(timesteps) - round(edit.strength * len(timesteps)):]
    x0 = edit.x0.to(noise.device, noise.dtype).expand_as(noise)
    if not kept:
        return x0.clone(), kept
    alpha_bar = alpha_bar_at(schedule, kept[0])
    # Meng et al. 2022, sec. 3: $x_{t_0} = \sqrt{\bar\alpha_{t_0}}\, x_0 + \sqrt{1 - \bar\alpha_{t_0}}\, \epsilon$
    return alpha_bar ** 0.5 * x0 + (1 - alpha_bar) ** 0.5 * noise, kept


def keep_known(x_t: torch.Tensor, t: float, schedule: NoiseSchedule, edit: Edit | None) -> torch.Tensor:
    """Overwrite the kept region of x_t (where the mask is 0) with the input noised to step t (t = -1: the clean
    input itself)."""
    if edit is None or edit.mask is None:
        return x_t
    x0 = edit.x0.to(x_t.device, x_t.dtype)
    keep = (1 - edit.mask).to(x_t.device, x_t.dtype)  # 1 - m: the share of each pixel (or latent cell) kept
    if t < 0:
        known = x0.expand_as(x_t)
    else:
        alpha_bar = alpha_bar_at(schedule, t)
        eps = torch.randn(x_t.shape, generator=edit.generator, device=x_t.device)
        # Lugmayr et al. 2022, eq. 8: $x^{known}_t \sim \mathcal N(\sqrt{\bar\alpha_t}\, x_0, (1 - \bar\alpha_t) I)$
        known = alpha_bar ** 0.5 * x0 + (1 - alpha_bar) ** 0.5 * eps
    # $x_t \leftarrow (1 - m) \odot x^{known}_t + m \odot x_t$
    return keep * known + (1 - keep) * x_t


def latent_mask(mask: torch.Tensor, factor: int) -> torch.Tensor:
    """A pixel mask (B, 1, H, W), 1 = regenerate, -> the share to regenerate per latent cell (B, 1, H / f, W / f).

    A latent cell is regenerated as much as its pixels are on average (area pooling); the edge is soft.
    """
    return F.avg_pool2d(mask, kernel_size=factor)
