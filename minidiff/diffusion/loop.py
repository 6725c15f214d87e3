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
  (`minidiff.diffusion.editing.keep_known`); Algorithm 1: optionally, stretches of steps walked again after a
  jump back up (`minidiff.diffusion.editing.repaint_path`).

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

from minidiff.diffusion.arguments import (
    device_name,
    flag,
    function,
    generator_or_none,
    one_of,
    same_batch,
    sample_shape,
)
from minidiff.diffusion.editing import Edit, keep_known, renoise, repaint_path
from minidiff.diffusion.flow import FLOW, alpha_bar_of_flow_time, eps_on_path, x0_and_eps_from_velocity
from minidiff.diffusion.forward import PREDICTIONS, eps_from_x0, x0_and_eps_from_output
from minidiff.diffusion.schedule import NoiseSchedule, alpha_bar_at

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t (B, C, H, W), t (B,)) -> output (B, C, H, W)


def model_denoiser(model: nn.Module, class_labels: torch.Tensor | None = None, context: torch.Tensor | None = None,
                   context_mask: torch.Tensor | None = None) -> Denoiser:
    """Bind a network's conditioning (class labels, text context) so samplers can call it as denoiser(x_t, t).

    Classifier-free guidance (`minidiff.diffusion.guidance.guided_denoiser`) is another function of the same shape.
    """
    def denoiser(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        same_batch("class_labels", class_labels, x_t)
        same_batch("context", context, x_t)
        return model(x_t, t, class_labels=class_labels, context=context, context_mask=context_mask)
    return denoiser


def gaussian_noise(shape: tuple[int, ...], generator: torch.Generator | None,
                   device: torch.device | str) -> torch.Tensor:
    """Standard normal noise from `generator`, drawn on the generator's device and moved to `device`.

    Drawing on the generator's device (the CPU for a CPU generator) gives the same noise for a seed on any device.
    """
    source = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=source).to(device)


def check_sampling(denoiser: Denoiser, shape: tuple[int, ...], schedule: NoiseSchedule, prediction: str,
                   clip_x0: bool, generator: torch.Generator | None, device: torch.device | str,
                   callback: Callable | None, edit: Edit | None) -> None:
    """Refuse, with a message naming the argument, what no sampler can use: the checks every `sample_*` runs first.

    Raises TypeError for a wrong kind of value, ValueError for a wrong value (a shape of zero, an unknown
    prediction, an edit whose input is not shaped like the images to draw).
    """
    function("denoiser", denoiser, "(x_t, t) -> the network's output, e.g. model_denoiser(model)")
    shape = sample_shape("shape", shape)
    if prediction == FLOW:
        raise ValueError("a rectified-flow model (prediction 'flow') samples in flow time t with the flow samplers "
                         "('flow_euler', 'flow_midpoint', 'flow_heun'); for this sampler wrap it in "
                         "minidiff.diffusion.flow_bridge.vp_denoiser_from_flow and pass prediction 'v'")
    if not isinstance(schedule, NoiseSchedule):
        raise TypeError(f"schedule must be a NoiseSchedule (e.g. make_schedule('cosine', 1000)), got "
                        f"{type(schedule).__name__}")
    one_of("prediction", prediction, PREDICTIONS)
    flag("clip_x0", clip_x0)
    generator_or_none("generator", generator)
    device_name("device", device)
    if callback is not None:
        function("callback", callback, "that takes a DenoisingStep")
    if edit is not None:
        check_edit_fits(edit, shape)


def check_edit_fits(edit: Edit, shape: tuple[int, ...]) -> None:
    """An edit's input (and mask) must be shaped like the images drawn: (B or 1, C, H, W) for shape (B, C, H, W)."""
    if not isinstance(edit, Edit):
        raise TypeError(f"edit must be an Edit (minidiff.diffusion.editing.Edit) or None, got {type(edit).__name__}")
    batch, rest = shape[0], tuple(shape[1:])
    if edit.x0.ndim != len(shape) or tuple(edit.x0.shape[1:]) != rest or edit.x0.shape[0] not in (1, batch):
        raise ValueError(f"edit.x0 has shape {tuple(edit.x0.shape)}, but the sampler draws shape {shape}: give an "
                         f"input of shape ({batch} or 1, {', '.join(map(str, rest))}), or draw its shape")
    if edit.mask is not None and edit.mask.shape[0] not in (1, batch):
        raise ValueError(f"edit.mask has a batch of {edit.mask.shape[0]} but the sampler draws {batch} images; "
                         f"give one mask for all (batch 1) or one per image")


@dataclass
class DenoisingStep:
    """What the sampling loop reports after each step (for widgets, plots and step counting)."""

    index: int  # 0, 1, ... in sampling order
    t: float  # timestep of x_t: an int, fractional for Karras sigmas, or a flow model's time in [0, 1]
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
    consistent: x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps (for a flow model, x_t = (1 - t) x0 + t eps).
    """
    t_dtype = torch.long if isinstance(t, int) else torch.float32
    t_batch = torch.full((len(x_t),), t, dtype=t_dtype, device=x_t.device)  # () -> (B,)
    output = denoiser(x_t, t_batch)
    if prediction == FLOW:  # a velocity on the straight path, at flow time t (minidiff.diffusion.flow)
        x0, eps = x0_and_eps_from_velocity(x_t, output, t)
        if clip_x0:
            x0 = x0.clamp(-1.0, 1.0)
            eps = eps_on_path(x_t, x0, t)
        return x0, eps
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


def flow_or_schedule(schedule: NoiseSchedule | None, prediction: str) -> Callable[[float], float]:
    """timestep -> alpha_bar: the schedule's (`alpha_bar_at`), or for a rectified-flow model (schedule None), the
    noise level of flow time t (`minidiff.diffusion.flow.alpha_bar_of_flow_time`). Refuses a mismatched pair."""
    if prediction == FLOW and schedule is not None:
        raise ValueError("a rectified-flow model (prediction 'flow') samples in flow time t with the flow samplers "
                         "('flow_euler', 'flow_midpoint', 'flow_heun'); for this sampler wrap it in "
                         "minidiff.diffusion.flow_bridge.vp_denoiser_from_flow and pass prediction 'v'")
    if prediction != FLOW and schedule is None:
        raise ValueError(f"a model with prediction {prediction!r} needs its NoiseSchedule; for the flow samplers "
                         "wrap it in minidiff.diffusion.flow_bridge.flow_denoiser_from_vp")
    if prediction == FLOW:
        return alpha_bar_of_flow_time
    return lambda t: alpha_bar_at(schedule, t)


def denoising_loop(denoiser: Denoiser, x_t: torch.Tensor, schedule: NoiseSchedule | None, prediction: str,
                   timesteps: list[float], update: Update, clip_x0: bool = False,
                   callback: Callable[[DenoisingStep], None] | None = None,
                   correct: Correct | None = None, edit: Edit | None = None) -> torch.Tensor:
    """The loop all samplers share: at each timestep predict (x0, eps), take `update`'s step, report it.

    `timesteps` run downwards (see `minidiff.diffusion.timesteps`), ints or fractional (Karras sigmas); after the last
    one the result is the clean image. With `correct` (predictor-corrector samplers, i.e. Heun), the network is
    evaluated again at the update's result, and `correct` makes the step from both predictions; not on the
    last step, into the clean image. NFE counts calls of `denoiser`: one per step, two with a correction.
    With an `edit` that keeps part of an input (inpainting), that part of x_t is the input noised to t before
    every step, and the input itself at the end (`minidiff.diffusion.editing.keep_known`); with RePaint's
    resampling (edit.resamplings > 0) the loop walks `minidiff.diffusion.editing.repaint_path`, noising x_t back up
    wherever that path rises (`renoise`); every step walked is reported, repeats included.
    A rectified-flow model (prediction 'flow', schedule None) runs the same loop in flow time: its timesteps are
    floats t in [0, 1], x_t lies on the straight path, and each t has the noise level alpha_bar of the bridge
    (`minidiff.diffusion.flow`); its samplers are `minidiff.diffusion.samplers.sample_flow_euler` and its two siblings.
    """
    noise_level = flow_or_schedule(schedule, prediction)
    if timesteps and prediction == "eps" and noise_level(timesteps[0]) == 0.0:
        raise ValueError("an eps-predicting model cannot recover x0 at zero SNR (alpha_bar = 0 at the first step); "
                         "train with prediction 'v' or 'x0' for a zero-terminal-SNR schedule (Lin et al. 2023)")
    denoiser = CountedDenoiser(denoiser)
    path = repaint_path(timesteps, edit)  # the timesteps, or with RePaint's jumps back up
    index = 0
    with torch.inference_mode():
        for position, t in enumerate(path):
            t_prev = path[position + 1] if position + 1 < len(path) else -1
            x_t = keep_known(x_t, t, schedule, edit)
            alpha_bar = noise_level(t)
            if t_prev > t:  # RePaint: jump back up to t_prev by the forward process, then walk down again
                x_t = renoise(x_t, alpha_bar, noise_level(t_prev), edit.generator)
                continue
            alpha_bar_prev = noise_level(t_prev) if t_prev >= 0 else 1.0
            x0, eps = predict_x0_and_eps(denoiser, prediction, x_t, t, alpha_bar, clip_x0)
            x_prev = update(x_t, x0, eps, alpha_bar, alpha_bar_prev)
            if correct is not None and t_prev >= 0:
                _, eps_next = predict_x0_and_eps(denoiser, prediction, x_prev, t_prev, alpha_bar_prev, clip_x0)
                x_prev = correct(x_t, eps, eps_next, alpha_bar, alpha_bar_prev)
            if callback is not None:
                callback(DenoisingStep(index, t, t_prev, x_t, eps, x0, x_prev, nfe=denoiser.calls))
            index, x_t = index + 1, x_prev
    return keep_known(x_t, -1, schedule, edit)
