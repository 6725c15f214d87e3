r"""The one sampling loop every sampler runs, and what it passes around: denoisers, reported steps, counted NFE.

`denoising_loop` walks down a sampler's timesteps: at each one it asks the network for its prediction at x_t,
reads it as (x0, eps) whatever the network was trained to predict (`predict_x0_and_eps`), and lets the sampler's
update (a step of `minidiff.diffusion.steps` or `minidiff.diffusion.dpm_solver`) move x_t to the next, smaller
timestep; a corrector (Heun) may evaluate the network again at the result. Each step is reported to a callback as a
`DenoisingStep`, and `CountedDenoiser` counts the network evaluations. A denoiser is any function (x_t, t) ->
output: `model_denoiser` binds a network's conditioning, `minidiff.diffusion.guidance.guided_denoiser` adds
classifier-free guidance. The samplers, which choose the timesteps and the update, are `minidiff.diffusion.samplers`.

Papers followed:
- Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models", Algorithm 2: the reverse process as a loop
  from x_T down to the clean image.
- Karras, Aittala, Aila & Laine 2022, "Elucidating the Design Space of Diffusion-Based Generative Models",
  Algorithm 1: a second network evaluation at the Euler step's result (Heun), never on the last step, into the
  clean image; sec. 3: network evaluations (NFE) as the honest cost of a sampler.
- Lin, Liu, Li & Yang 2023, "Common Diffusion Noise Schedules and Sample Steps are Flawed", sec. 3.2: at zero
  terminal SNR an eps prediction says nothing about x0, so such a schedule needs a model that predicts v or x0.
- Lugmayr et al. 2022, "RePaint", eq. 8: the kept region of an inpainting edit is reset before every step
  (`minidiff.diffusion.editing.keep_known`).

Notation (variable -> symbol in Ho et al. 2020). t is 0-based: t = 0 is one step of noise, t = T-1 the last;
t is fractional for Karras sigmas.

    x_t             x_t            the noisy image at timestep t
    x_prev          x_{t-1}        the image at the next timestep the sampler visits (t_prev < t; -1: the clean image)
    alpha_bar       \bar\alpha_t   signal kept at t;  alpha_bar_prev = \bar\alpha_{t_prev}, 1 for the clean image
    eps             \epsilon_\theta(x_t, t)   the predicted noise
    x0              \hat x_0       the predicted clean image
    denoiser        (x_t, t) -> the network's output (eps, x0 or v, whichever it was trained to predict)
    NFE             network evaluations (calls of the denoiser): the honest cost of a sample
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from minidiff.diffusion.editing import Edit, keep_known
from minidiff.diffusion.forward import eps_from_x0, x0_and_eps_from_output
from minidiff.diffusion.schedule import NoiseSchedule, alpha_bar_at

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t (B, C, H, W), t (B,)) -> output (B, C, H, W)


def model_denoiser(model: nn.Module, class_labels: torch.Tensor | None = None, context: torch.Tensor | None = None,
                   context_mask: torch.Tensor | None = None) -> Denoiser:
    """Bind a network's conditioning (class labels, text context) so samplers can call it as denoiser(x_t, t).

    Classifier-free guidance (`minidiff.diffusion.guidance.guided_denoiser`) is another function of the same shape.
    """
    def denoiser(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return model(x_t, t, class_labels=class_labels, context=context, context_mask=context_mask)
    return denoiser


def gaussian_noise(shape: tuple[int, ...], generator: torch.Generator | None,
                   device: torch.device | str) -> torch.Tensor:
    """Standard normal noise from `generator`, drawn on the generator's device and moved to `device`.

    Drawing on the generator's device (the CPU for a CPU generator) gives the same noise for a seed on any device.
    """
    source = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=source).to(device)


@dataclass
class DenoisingStep:
    """What the sampling loop reports after each step (for widgets, plots and step counting)."""

    index: int  # 0, 1, ... in sampling order
    t: float  # timestep of x_t: an int, or fractional for Karras sigmas
    t_prev: float  # timestep of x_prev; -1 for the final, clean image
    x_t: torch.Tensor  # (B, C, H, W) the input of this step
    eps: torch.Tensor  # (B, C, H, W) predicted noise
    x0: torch.Tensor  # (B, C, H, W) predicted clean image (after clipping, when asked)
    x_prev: torch.Tensor  # (B, C, H, W) the output of this step
    nfe: int  # network evaluations so far


class CountedDenoiser:
    """A denoiser that counts its calls: the number of network evaluations (NFE) a sampler spends."""

    def __init__(self, denoiser: Denoiser):
        self.denoiser = denoiser
        self.calls = 0

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.denoiser(x_t, t)


def predict_x0_and_eps(denoiser: Denoiser, prediction: str, x_t: torch.Tensor, t: float, alpha_bar: float,
                       clip_x0: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Evaluate the network once at (x_t, t) and read its output as (x0, eps), whatever it predicts.

    An int t goes to the network as a LongTensor, a fractional one (Karras sigmas) as float32.
    With clip_x0, x0 is clipped to the data range [-1, 1] and eps recomputed from it, so the pair stays
    consistent: x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps.
    """
    t_dtype = torch.long if isinstance(t, int) else torch.float32
    t_batch = torch.full((len(x_t),), t, dtype=t_dtype, device=x_t.device)  # () -> (B,)
    output = denoiser(x_t, t_batch)
    # alpha_bar stays a Python float (float64): the conversions cast their coefficients to x_t's dtype at the end
    x0, eps = x0_and_eps_from_output(prediction, output, x_t, alpha_bar)
    if clip_x0:
        x0 = x0.clamp(-1.0, 1.0)
        eps = eps_from_x0(x_t, x0, alpha_bar)
    return x0, eps


# a sampler's step: (x_t, x0, eps, alpha_bar, alpha_bar_prev) -> x_prev
Update = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float, float], torch.Tensor]


# a corrector (Heun): (x_t, eps, eps_next, alpha_bar, alpha_bar_prev) -> x_prev, where eps_next is the prediction
# at the update's result x_prev
Correct = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float, float], torch.Tensor]


def denoising_loop(denoiser: Denoiser, x_t: torch.Tensor, schedule: NoiseSchedule, prediction: str,
                   timesteps: list[float], update: Update, clip_x0: bool = False,
                   callback: Callable[[DenoisingStep], None] | None = None,
                   correct: Correct | None = None, edit: Edit | None = None) -> torch.Tensor:
    """The loop all samplers share: at each timestep predict (x0, eps), take `update`'s step, report it.

    `timesteps` run downwards (see `minidiff.diffusion.timesteps`), ints or fractional (Karras sigmas); after the last
    one the result is the clean image. With `correct` (predictor-corrector samplers, i.e. Heun), the network is
    evaluated again at the update's result, and `correct` makes the step from both predictions; not on the
    last step, into the clean image. NFE counts calls of `denoiser`: one per step, two with a correction.
    With an `edit` that keeps part of an input (inpainting), that part of x_t is the input noised to t before
    every step, and the input itself at the end (`minidiff.diffusion.editing.keep_known`).
    """
    if timesteps and prediction == "eps" and alpha_bar_at(schedule, timesteps[0]) == 0.0:
        raise ValueError("an eps-predicting model cannot recover x0 at zero SNR (alpha_bar = 0 at the first step); "
                         "train with prediction 'v' or 'x0' for a zero-terminal-SNR schedule (Lin et al. 2023)")
    denoiser = CountedDenoiser(denoiser)
    with torch.inference_mode():
        for index, t in enumerate(timesteps):
            t_prev = timesteps[index + 1] if index + 1 < len(timesteps) else -1
            x_t = keep_known(x_t, t, schedule, edit)
            alpha_bar = alpha_bar_at(schedule, t)
            alpha_bar_prev = alpha_bar_at(schedule, t_prev) if t_prev >= 0 else 1.0
            x0, eps = predict_x0_and_eps(denoiser, prediction, x_t, t, alpha_bar, clip_x0)
            x_prev = update(x_t, x0, eps, alpha_bar, alpha_bar_prev)
            if correct is not None and t_prev >= 0:
                _, eps_next = predict_x0_and_eps(denoiser, prediction, x_prev, t_prev, alpha_bar_prev, clip_x0)
                x_prev = correct(x_t, eps, eps_next, alpha_bar, alpha_bar_prev)
            if callback is not None:
                callback(DenoisingStep(index, t, t_prev, x_t, eps, x0, x_prev, nfe=denoiser.calls))
            x_t = x_prev
    return keep_known(x_t, -1, schedule, edit)
