r"""Editing instead of drawing from scratch: start from an image (SDEdit), or regenerate part of it (inpainting).

Papers followed:
- Meng et al. 2022, "SDEdit: Guided Image Synthesis and Editing with Stochastic Differential Equations", sec. 3:
  noise the input to an intermediate time $t_0$ with the forward process, $x_{t_0} = \sqrt{\bar\alpha_{t_0}}\,x_0 +
  \sqrt{1-\bar\alpha_{t_0}}\,\epsilon$, and run the reverse process from there. The strength, in [0, 1], is that
  time as a share of the diffusion, $t_0 = \text{strength} \cdot T$, whatever the sampler and its spacing: strength 0
  returns the input, strength 1 starts from (almost) pure noise. The sampler then spends the same share of its
  steps on the way down from $t_0$ (`minidiff.diffusion.timesteps.edit_timesteps`).
- Lugmayr et al. 2022, "RePaint", eq. 8 (and Song et al. 2021b, app. I.2, before them): inpainting with an
  unconditional sampler. A mask $m$ marks the region to regenerate (1) and the region to keep (0). Before every
  step, the kept region is overwritten with the input noised to the current step,
  $x_t \leftarrow (1 - m) \odot q(x_t \mid x_0) + m \odot x_t$, so the model fills the masked region in a way that
  agrees with it. After the last step the kept region is the input itself. (RePaint's own mask $m$ is 1 where the
  input is known: our $1 - m$.) RePaint's resampling (sec. 4.2, Algorithm 1): after every `jump_length` steps,
  noise the result back up to where the stretch began, $q(x_{t} \mid x_{t'})$, and walk it again, `resamplings`
  more times: each walk lets the regenerated region agree better with the kept one (`repaint_path`, `renoise`).

Every sampler in `minidiff.diffusion.samplers` takes an `Edit`: `minidiff.diffusion.timesteps.edit_timesteps` and
`starting_point` give its timesteps and x_T, and the sampling loop calls `keep_known` before every step. The pipeline
(`minidiff.pipeline.TextToImage.edit`) builds one from an image and a mask, in latent space (the mask taken to the
latent grid by `latent_mask`), and pastes the kept pixels back after decoding (`paste_kept`). A mask means the
same everywhere: 1 = regenerate, 0 = keep.

Rounding. strength * T and strength * S are rounded half up, floor(x + 1/2), never to even: strength 0.25 of
10 steps runs 3, strength 0.1 of 5 steps runs 1 (`minidiff.diffusion.timesteps.round_half_up`).
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from minidiff.diffusion.arguments import generator_or_none, image_batch, real_number, whole_number
from minidiff.diffusion.schedule import NoiseSchedule, alpha_bar_at


@dataclass
class Edit:
    """What to start from and what to regenerate. mask: 1 where the input is regenerated, 0 where it is kept."""

    x0: torch.Tensor  # (B, C, H, W) the input, in the space the model denoises (a latent for latent models)
    strength: float = 1.0  # where the edit starts: t_0 = strength * T (SDEdit); 0 = the input, 1 = pure noise
    mask: torch.Tensor | None = None  # (B or 1, 1, H, W) in [0, 1], 1 = regenerate; None: no mask (plain SDEdit)
    generator: torch.Generator | None = None  # the kept region's fresh noise; None: the sampler's own generator
    jump_length: int = 10  # RePaint's j: steps walked down before each jump back (their choice, 10)
    resamplings: int = 0  # RePaint's U - 1: extra walks of each stretch; 0 = no resampling

    def __post_init__(self):
        image_batch("x0", self.x0)
        self.strength = real_number("strength", self.strength, 0.0, 1.0, what="0 = return the input, 1 = ignore it")
        generator_or_none("generator", self.generator)
        if self.mask is not None:
            check_mask(self.mask, self.x0)
        self.jump_length = whole_number("jump_length", self.jump_length, 1, what="RePaint's steps between jumps back")
        self.resamplings = whole_number("resamplings", self.resamplings, 0, what="RePaint's extra walks; 0 = none")
        if self.resamplings and self.mask is None:
            raise ValueError("resamplings (RePaint) make the regenerated region agree with the kept one: give a mask")


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


def starting_point(noise: torch.Tensor, timesteps: list, schedule: NoiseSchedule, edit: Edit | None) -> torch.Tensor:
    """x_T: pure noise, or (SDEdit) the input noised to the first of the edit's timesteps
    (`minidiff.diffusion.timesteps.edit_timesteps`); the input itself when no step runs."""
    if edit is None:
        return noise
    x0 = edit.x0.to(noise.device, noise.dtype).expand_as(noise)
    if not timesteps:
        return x0.clone()
    alpha_bar = alpha_bar_at(schedule, timesteps[0])
    # Meng et al. 2022, sec. 3: $x_{t_0} = \sqrt{\bar\alpha_{t_0}}\, x_0 + \sqrt{1 - \bar\alpha_{t_0}}\, \epsilon$
    return alpha_bar ** 0.5 * x0 + (1 - alpha_bar) ** 0.5 * noise


def fresh_noise(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """N(0, I) noise shaped like `like`, drawn on the generator's device (the same noise for a seed on any device)."""
    source = generator.device if generator is not None else like.device
    return torch.randn(like.shape, generator=generator, device=source).to(like.device, like.dtype)


def keep_known(x_t: torch.Tensor, t: float, schedule: NoiseSchedule, edit: Edit | None) -> torch.Tensor:
    """Overwrite the kept region of x_t (where the mask is 0) with the input noised to step t (t = -1: the clean
    input itself). The noise comes from edit.generator."""
    if edit is None or edit.mask is None:
        return x_t
    x0 = edit.x0.to(x_t.device, x_t.dtype)
    keep = (1 - edit.mask).to(x_t.device, x_t.dtype)  # 1 - m: the share of each pixel (or latent cell) kept
    if t < 0:
        known = x0.expand_as(x_t)
    else:
        alpha_bar = alpha_bar_at(schedule, t)
        # Lugmayr et al. 2022, eq. 8: $x^{known}_t \sim \mathcal N(\sqrt{\bar\alpha_t}\, x_0, (1 - \bar\alpha_t) I)$
        known = alpha_bar ** 0.5 * x0 + (1 - alpha_bar) ** 0.5 * fresh_noise(x_t, edit.generator)
    # $x_t \leftarrow (1 - m) \odot x^{known}_t + m \odot x_t$
    return keep * known + (1 - keep) * x_t


def renoise(x_s: torch.Tensor, alpha_bar_s: float, alpha_bar_t: float,
            generator: torch.Generator | None) -> torch.Tensor:
    r"""RePaint's jump back (Lugmayr et al. 2022, Algorithm 1, line 9, over several steps): from x_s at a lower noise
    level to a higher one, t > s, by the forward process $q(x_t \mid x_s)$ (Ho et al. 2020, eq. 4 between any two
    steps): $x_t = \sqrt{\bar\alpha_t / \bar\alpha_s}\, x_s + \sqrt{1 - \bar\alpha_t / \bar\alpha_s}\, z$."""
    ratio = alpha_bar_t / alpha_bar_s  # < 1: the signal kept from s to t
    return ratio ** 0.5 * x_s + (1 - ratio) ** 0.5 * fresh_noise(x_s, generator)


def repaint_path(timesteps: list, edit: Edit | None) -> list:
    """The order in which the loop visits timesteps: `timesteps` as they are, or with RePaint's resampling each stretch
    of edit.jump_length steps walked 1 + edit.resamplings times, jumping back up to its start in between.

    E.g. timesteps [9, 8, 7, 6, 5], jump_length 2, resamplings 1: [9, 8, 7, 9, 8, 7, 6, 5, 7, 6, 5]. A rise in the
    list is a jump back (`renoise`). The last step, into the clean image, is never repeated (as in RePaint).
    """
    if edit is None or edit.resamplings == 0 or not timesteps:
        return list(timesteps)
    path = [timesteps[0]]
    for start in range(0, len(timesteps) - 1, edit.jump_length):
        stretch = timesteps[start:start + edit.jump_length + 1]  # jump_length steps down (fewer at the end)
        for _ in range(edit.resamplings):
            path += stretch[1:] + [stretch[0]]  # down, then back up to the stretch's start
        path += stretch[1:]
    return path


def latent_mask(mask: torch.Tensor, factor: int) -> torch.Tensor:
    """A pixel mask (B, 1, H, W), 1 = regenerate, -> a mask on the latent grid (B, 1, H / f, W / f).

    A latent cell is regenerated as much as its most regenerated pixel (max pooling): a single white pixel
    regenerates its whole cell, so no white pixel is ever kept; `paste_kept` then restores the pixels outside the
    mask after decoding.
    """
    return F.max_pool2d(mask, kernel_size=factor)


def paste_kept(images: torch.Tensor, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    r"""The final picture of an inpainting: the decoded images (B, C, H, W) inside the pixel mask (B or 1, 1, H, W),
    the input (B or 1, C, H, W) outside it, $m \odot \hat x + (1 - m) \odot x$: every kept pixel is the input's own."""
    mask = mask.to(images.device, images.dtype)
    return mask * images + (1 - mask) * inputs.to(images.device, images.dtype)
