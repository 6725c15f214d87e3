r"""Editing instead of drawing from scratch: start from an image (SDEdit), or keep part of it (inpainting).

Papers followed:
- Meng et al. 2022, "SDEdit: Guided Image Synthesis and Editing with Stochastic Differential Equations", sec. 3:
  noise the input to an intermediate step $t_0$ with the forward process, $x_{t_0} = \sqrt{\bar\alpha_{t_0}}\,x_0 +
  \sqrt{1-\bar\alpha_{t_0}}\,\epsilon$, and run the reverse process from there. The strength, in [0, 1], is the share
  of the sampler's steps that run, and $t_0$ the first of them: strength 0 returns the input, strength 1 starts
  from (almost) pure noise.
- Lugmayr et al. 2022, "RePaint", eq. 8 (and Song et al. 2021b, app. I.2, before them): inpainting with an
  unconditional sampler. Before every step, the region to keep is overwritten with the input noised to the
  current step, $x_t \leftarrow m \odot q(x_t \mid x_0) + (1 - m) \odot x_t$, so the model fills the rest in a way
  that agrees with it. After the last step the kept region is the input itself.

Every sampler in `minidiff.diffusion.samplers` takes an `Edit`: `starting_point` gives its x_T and timesteps, and the
sampling loop calls `keep_known` before every step. The pipeline (`minidiff.pipeline.TextToImage.edit`) builds one
from an image and a mask, in latent space (the mask shrunk to the latent grid by `latent_keep`); the image and
mask files are read by `minidiff.files.images`.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from minidiff.diffusion.schedule import NoiseSchedule, alpha_bar_at


@dataclass
class Edit:
    """What to start from and what to keep. keep: 1 where the input is kept, 0 where it is regenerated."""

    x0: torch.Tensor  # (B, C, H, W) the input, in the space the model denoises (a latent for latent models)
    strength: float = 1.0  # share of the sampler's steps that run
    keep: torch.Tensor | None = None  # (B or 1, 1, H, W) in [0, 1]; None: keep nothing (plain SDEdit)
    generator: torch.Generator | None = None  # the fresh noise that re-noises the kept region at every step

    def __post_init__(self):
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError(f"strength must lie in [0, 1] (0 = return the input, 1 = ignore it), got {self.strength}")
        if self.keep is not None and (self.keep.ndim != 4 or self.keep.shape[-2:] != self.x0.shape[-2:]):
            raise ValueError(f"the mask must be (B or 1, 1, {self.x0.shape[-2]}, {self.x0.shape[-1]}) like the input, "
                             f"got {tuple(self.keep.shape)}")


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
    """Overwrite the kept region of x_t with the input noised to step t (t = -1: the clean input itself)."""
    if edit is None or edit.keep is None:
        return x_t
    x0, keep = edit.x0.to(x_t.device, x_t.dtype), edit.keep.to(x_t.device, x_t.dtype)
    if t < 0:
        known = x0.expand_as(x_t)
    else:
        alpha_bar = alpha_bar_at(schedule, t)
        eps = torch.randn(x_t.shape, generator=edit.generator, device=x_t.device)
        # Lugmayr et al. 2022, eq. 8: $x^{known}_t \sim \mathcal N(\sqrt{\bar\alpha_t}\, x_0, (1 - \bar\alpha_t) I)$
        known = alpha_bar ** 0.5 * x0 + (1 - alpha_bar) ** 0.5 * eps
    # $x_t \leftarrow m \odot x^{known}_t + (1 - m) \odot x^{unknown}_t$
    return keep * known + (1 - keep) * x_t


def latent_keep(regenerate: torch.Tensor, factor: int) -> torch.Tensor:
    """A pixel mask (B, 1, H, W), 1 = regenerate, -> the share to keep per latent cell (B, 1, H / f, W / f).

    A latent cell is regenerated as much as its pixels are on average (area pooling); the edge is soft.
    """
    return 1.0 - F.avg_pool2d(regenerate, kernel_size=factor)
