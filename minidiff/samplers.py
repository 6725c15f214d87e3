r"""Reverse samplers: from pure noise back to an image, one denoising step at a time.

Papers followed:
- Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models": ancestral sampling, Algorithm 2;
  the posterior q(x_{t-1} | x_t, x0), eq. (6)-(7); the two variance choices beta and beta_tilde, sec. 3.2.
- Nichol & Dhariwal 2021, "Improved Denoising Diffusion Probabilistic Models", sec. 4: sampling with fewer
  steps on a sub-sequence of the T training steps, with betas recomputed for it.
- Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models" (DDIM): the step eq. (12) with the noise scale
  sigma_t(eta) of eq. (16); eta = 0 is deterministic, eta = 1 is DDPM.
- Lin, Liu, Li & Yang 2023, "Common Diffusion Noise Schedules and Sample Steps are Flawed", Table 2: the
  timestep spacings linspace, leading and trailing (`sampling_timesteps`, in `minidiff.samplers_ode`).
- DPM-Solver++(2M), Euler and Heun on Karras sigmas: their steps live in `minidiff.samplers_ode`; DPM-Solver's
  multistep bookkeeping and its SDE variant, SDE-DPM-Solver++(2M), in `minidiff.samplers_dpm`.

Every sampler is the same loop (`denoising_loop`): ask the network for its prediction at x_t, read it as
(x0, eps), and let the sampler's step function move x_t to the next, smaller timestep. Each sampler is a step
function plus a `sample_*` function that picks the timesteps and runs the loop; `SAMPLERS` lists them by name.

Notation (variable -> symbol in Ho et al. 2020). t is 0-based: t = 0 is one step of noise, t = T-1 the last.

    x_t             x_t            the noisy image at timestep t
    x_prev          x_{t-1}        the image at the next timestep the sampler visits (t_prev < t)
    alpha_bar       \bar\alpha_t   signal kept at t;  alpha_bar_prev = \bar\alpha_{t_prev}, 1 for the clean image
                                   (DDIM's paper writes \alpha_t for it)
    beta            \beta_t        1 - \bar\alpha_t / \bar\alpha_{t_prev}: the noise added from t_prev to t
    eps             \epsilon_\theta(x_t, t)   the predicted noise
    x0              \hat x_0       the predicted clean image
    eta             \eta           DDIM's share of fresh noise per step: 0 deterministic ... 1 like DDPM
    sigma           \sigma         sqrt((1 - alpha_bar) / alpha_bar), the Karras/EDM noise level
    denoiser        (x_t, t) -> the network's output (eps, x0 or v, whichever it was trained to predict)
    NFE             network evaluations (calls of the denoiser): the honest cost of a sample
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from minidiff.editing import Edit, keep_known, starting_point
from minidiff.forward import eps_from_x0, x0_and_eps_from_output
from minidiff.samplers_dpm import dpm_solver_2m_update
from minidiff.samplers_ode import (SPACINGS, alpha_bar_at, euler_update, heun_correction, karras_timesteps,
                                   sampling_timesteps)
from minidiff.schedule import NoiseSchedule

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t (B, C, H, W), t (B,)) -> output (B, C, H, W)
VARIANCES = ("beta_tilde", "beta")


def model_denoiser(model: nn.Module, class_labels: torch.Tensor | None = None, context: torch.Tensor | None = None,
                   context_mask: torch.Tensor | None = None) -> Denoiser:
    """Bind a network's conditioning (class labels, text context) so samplers can call it as denoiser(x_t, t).

    Classifier-free guidance (`minidiff.guidance.guided_denoiser`) is another function of the same shape.
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


def ddpm_step(x_t: torch.Tensor, x0: torch.Tensor, alpha_bar: float, alpha_bar_prev: float,
              noise: torch.Tensor | None = None, variance: str = "beta_tilde") -> torch.Tensor:
    r"""One step of DDPM ancestral sampling (Ho et al. 2020, Algorithm 2), from x_t to x_prev given a predicted x0.

    The mean is the posterior mean of q(x_prev | x_t, x0) (eq. 7) with x0 replaced by its prediction;
    the variance is beta_tilde (that posterior's variance) or beta (sec. 3.2). `noise` = None gives the mean alone.
    """
    if variance not in VARIANCES:
        raise ValueError(f"unknown variance {variance!r}; choose one of {VARIANCES}")
    # 1. this step's own alpha and beta (the full schedule's for consecutive t, bigger for respaced steps)
    # $\alpha_t = \bar\alpha_t / \bar\alpha_{t-1}, \quad \beta_t = 1 - \alpha_t$
    alpha = alpha_bar / alpha_bar_prev
    beta = 1.0 - alpha

    # 2. the posterior mean, eq. (7) of Ho et al. 2020
    # $\tilde\mu_t = \frac{\sqrt{\bar\alpha_{t-1}}\beta_t}{1-\bar\alpha_t} \hat x_0 + \frac{\sqrt{\alpha_t}(1-\bar\alpha_{t-1})}{1-\bar\alpha_t} x_t$
    coef_x0 = math.sqrt(alpha_bar_prev) * beta / (1.0 - alpha_bar)
    coef_xt = math.sqrt(alpha) * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar)
    mean = coef_x0 * x0 + coef_xt * x_t
    if noise is None:
        return mean

    # 3. the variance: $\sigma_t^2 = \tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\beta_t$ (eq. 7) or $\sigma_t^2 = \beta_t$
    sigma_squared = (1.0 - alpha_bar_prev) / (1.0 - alpha_bar) * beta if variance == "beta_tilde" else beta

    # 4. Algorithm 2, line 4: $x_{t-1} = \tilde\mu_t + \sigma_t z$
    return mean + math.sqrt(sigma_squared) * noise


def ddim_step(x0: torch.Tensor, eps: torch.Tensor, alpha_bar: float, alpha_bar_prev: float, eta: float = 0.0,
              noise: torch.Tensor | None = None) -> torch.Tensor:
    r"""One step of DDIM (Song et al. 2021, eq. 12), from x_t (through its x0 and eps) to x_prev.

    x_prev is put together again from the predicted x0 and eps at the smaller noise level alpha_bar_prev, with a
    share eta of the noise replaced by fresh noise. eta = 0: deterministic; eta = 1: exactly DDPM's step with
    variance beta_tilde. `noise` = None leaves the fresh noise out.
    """
    # 1. the fresh noise's variance, eq. (16): $\sigma_t(\eta)^2 = \eta^2 \frac{1 - \bar\alpha_{t-1}}{1 - \bar\alpha_t} \left(1 - \frac{\bar\alpha_t}{\bar\alpha_{t-1}}\right)$
    sigma_squared = eta**2 * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar) * (1.0 - alpha_bar / alpha_bar_prev)

    # 2. eq. (12): $x_{t-1} = \sqrt{\bar\alpha_{t-1}}\, \hat x_0 + \sqrt{1 - \bar\alpha_{t-1} - \sigma_t^2}\, \hat\epsilon + \sigma_t z$
    x_prev = math.sqrt(alpha_bar_prev) * x0 + math.sqrt(1.0 - alpha_bar_prev - sigma_squared) * eps
    if noise is None:
        return x_prev
    return x_prev + math.sqrt(sigma_squared) * noise


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
    alpha_bar = torch.tensor(alpha_bar, dtype=x_t.dtype, device=x_t.device)  # in x_t's precision, not float32's
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

    `timesteps` run downwards (see `sampling_timesteps`), ints or fractional (Karras sigmas); after the last
    one the result is the clean image. With `correct` (predictor-corrector samplers, i.e. Heun), the network is
    evaluated again at the update's result, and `correct` makes the step from both predictions; not on the
    last step, into the clean image. NFE counts calls of `denoiser`: one per step, two with a correction.
    With an `edit` that keeps part of an input (inpainting), that part of x_t is the input noised to t before
    every step, and the input itself at the end (`minidiff.editing.keep_known`).
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


def sample_ddpm(denoiser: Denoiser, shape: tuple[int, ...], schedule: NoiseSchedule, prediction: str = "eps",
                steps: int | None = None, variance: str = "beta_tilde", clip_x0: bool = True,
                generator: torch.Generator | None = None, device: torch.device | str = "cpu",
                callback: Callable[[DenoisingStep], None] | None = None, spacing: str = "linspace",
                edit: Edit | None = None) -> torch.Tensor:
    """DDPM ancestral sampling (Ho et al. 2020, Algorithm 2): x_T ~ N(0, I), then one `ddpm_step` per timestep.

    steps: None for all T steps, or fewer, placed by `spacing` (see `sampling_timesteps`). One network
    evaluation per step. Returns the final images (B, C, H, W), roughly in [-1, 1].
    """
    if variance not in VARIANCES:
        raise ValueError(f"unknown variance {variance!r}; choose one of {VARIANCES}")
    x_T, timesteps = starting_point(gaussian_noise(shape, generator, device),  # Algorithm 2, line 1
                                    sampling_timesteps(schedule.T, steps, spacing), schedule, edit)

    def update(x_t, x0, eps, alpha_bar, alpha_bar_prev):
        # Algorithm 2, line 3: no noise on the last step, into the clean image (alpha_bar_prev = 1)
        noise = None if alpha_bar_prev == 1.0 else gaussian_noise(x_t.shape, generator, device)
        return ddpm_step(x_t, x0, alpha_bar, alpha_bar_prev, noise, variance)

    return denoising_loop(denoiser, x_T, schedule, prediction, timesteps, update, clip_x0, callback, edit=edit)


def sample_ddim(denoiser: Denoiser, shape: tuple[int, ...], schedule: NoiseSchedule, prediction: str = "eps",
                steps: int | None = None, spacing: str = "linspace", eta: float = 0.0, clip_x0: bool = True,
                generator: torch.Generator | None = None, device: torch.device | str = "cpu",
                callback: Callable[[DenoisingStep], None] | None = None, edit: Edit | None = None) -> torch.Tensor:
    """DDIM sampling (Song et al. 2021): x_T ~ N(0, I), then one `ddim_step` per timestep; one NFE per step.

    With eta = 0 the generator draws x_T and nothing else: the same x_T always gives the same image.
    """
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in 0 ... 1 (0 = deterministic DDIM, 1 = DDPM's variance), got {eta}")
    x_T, timesteps = starting_point(gaussian_noise(shape, generator, device),
                                    sampling_timesteps(schedule.T, steps, spacing), schedule, edit)

    def update(x_t, x0, eps, alpha_bar, alpha_bar_prev):
        noise = gaussian_noise(x_t.shape, generator, device) if eta > 0 and alpha_bar_prev < 1.0 else None
        return ddim_step(x0, eps, alpha_bar, alpha_bar_prev, eta, noise)

    return denoising_loop(denoiser, x_T, schedule, prediction, timesteps, update, clip_x0, callback, edit=edit)


def sample_dpm_solver(denoiser: Denoiser, shape: tuple[int, ...], schedule: NoiseSchedule, prediction: str = "eps",
                      steps: int | None = None, spacing: str = "linspace", clip_x0: bool = True,
                      generator: torch.Generator | None = None, device: torch.device | str = "cpu",
                      callback: Callable[[DenoisingStep], None] | None = None,
                      edit: Edit | None = None) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022b, Algorithm 2) for the probability-flow ODE: one NFE per step, second order
    except on the first and the last step (see `minidiff.samplers_dpm.dpm_solver_2m_update`)."""
    x_T, timesteps = starting_point(gaussian_noise(shape, generator, device),
                                    sampling_timesteps(schedule.T, steps, spacing), schedule, edit)
    return denoising_loop(denoiser, x_T, schedule, prediction, timesteps, dpm_solver_2m_update(), clip_x0, callback,
                          edit=edit)


def sample_dpm_solver_sde(denoiser: Denoiser, shape: tuple[int, ...], schedule: NoiseSchedule, prediction: str = "eps",
                          steps: int | None = None, spacing: str = "linspace", clip_x0: bool = True,
                          generator: torch.Generator | None = None, device: torch.device | str = "cpu",
                          callback: Callable[[DenoisingStep], None] | None = None,
                      edit: Edit | None = None) -> torch.Tensor:
    """SDE-DPM-Solver++(2M) (Lu et al. 2022b): DPM-Solver++(2M) for the reverse SDE, one NFE per step.

    The generator draws x_T, then fresh noise on every step but the last (`dpm_solver_sde_2m_step`)."""
    x_T, timesteps = starting_point(gaussian_noise(shape, generator, device),
                                    sampling_timesteps(schedule.T, steps, spacing), schedule, edit)
    update = dpm_solver_2m_update(noise_source=lambda noise_shape: gaussian_noise(noise_shape, generator, device))
    return denoising_loop(denoiser, x_T, schedule, prediction, timesteps, update, clip_x0, callback, edit=edit)


def sample_euler(denoiser: Denoiser, shape: tuple[int, ...], schedule: NoiseSchedule, prediction: str = "eps",
                 steps: int | None = None, spacing: str = "linspace", clip_x0: bool = True,
                 generator: torch.Generator | None = None, device: torch.device | str = "cpu",
                 callback: Callable[[DenoisingStep], None] | None = None, edit: Edit | None = None) -> torch.Tensor:
    """Euler's method on Karras sigmas (Karras et al. 2022, eq. 5 and Algorithm 1 without its correction).

    The `steps` noise levels span the same range as the spacing's timesteps, placed by eq. 5 (rho = 7), then
    a last step into sigma = 0. One NFE per step. x_T ~ N(0, I), as for every sampler here.
    """
    timesteps = karras_timesteps(schedule, sampling_timesteps(schedule.T, steps, spacing))
    x_T, timesteps = starting_point(gaussian_noise(shape, generator, device), timesteps, schedule, edit)
    return denoising_loop(denoiser, x_T, schedule, prediction, timesteps, euler_update, clip_x0, callback, edit=edit)


def sample_heun(denoiser: Denoiser, shape: tuple[int, ...], schedule: NoiseSchedule, prediction: str = "eps",
                steps: int | None = None, spacing: str = "linspace", clip_x0: bool = True,
                generator: torch.Generator | None = None, device: torch.device | str = "cpu",
                callback: Callable[[DenoisingStep], None] | None = None, edit: Edit | None = None) -> torch.Tensor:
    """Heun's method on Karras sigmas (Karras et al. 2022, Algorithm 1): an Euler step, then its correction.

    Two NFE per step, except the last, into sigma = 0, which stays an Euler step: 2 * steps - 1 in all.
    """
    timesteps = karras_timesteps(schedule, sampling_timesteps(schedule.T, steps, spacing))
    x_T, timesteps = starting_point(gaussian_noise(shape, generator, device), timesteps, schedule, edit)
    return denoising_loop(denoiser, x_T, schedule, prediction, timesteps, euler_update, clip_x0, callback,
                          correct=heun_correction, edit=edit)


# name -> sampling function; the CLI's --sampler choices
SAMPLERS = {"ddpm": sample_ddpm, "ddim": sample_ddim, "dpm++": sample_dpm_solver, "dpm++sde": sample_dpm_solver_sde,
            "euler": sample_euler, "heun": sample_heun}
