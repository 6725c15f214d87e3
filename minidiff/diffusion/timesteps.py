r"""Where samplers step: the timesteps they visit, a spacing of the T training steps, and Karras noise levels.

`sampling_timesteps` picks `steps` of the T timesteps, falling, placed as a spacing says (`edit_timesteps`: over the
first strength * T of them only, for an edit that starts part of the way, SDEdit); `karras_timesteps` puts
noise levels even in sigma^(1/rho) over the same range instead, as fractional timesteps, which
`minidiff.diffusion.schedule.alpha_bar_at` reads back. The samplers (`minidiff.diffusion.samplers`) take their
timesteps from here.

Papers followed:
- Nichol & Dhariwal 2021, "Improved Denoising Diffusion Probabilistic Models", sec. 4, and Lin, Liu, Li & Yang 2023,
  "Common Diffusion Noise Schedules and Sample Steps are Flawed", Table 2: fewer steps, and where they fall.
- Meng et al. 2022, "SDEdit", sec. 3: an edit starts at the time t_0 = strength * T on the diffusion.
- Karras, Aittala, Aila & Laine 2022, "Elucidating the Design Space of Diffusion-Based Generative Models" (EDM):
  the noise levels sigma_i (eq. 5, rho = 7).

Notation (variable -> symbol). t is 0-based, as everywhere in minidiff; a Karras timestep is fractional.

    steps           S, N             how many timesteps (noise levels) a sampler visits
    sigma           \sigma_i         sqrt((1 - alpha_bar) / alpha_bar), the EDM noise level;
                                     sigma_max and sigma_min bound the levels
    rho             \rho             the Karras schedule's exponent (7): larger rho spends more steps at low noise
"""

import math
import warnings

import torch

from minidiff.diffusion.arguments import one_of, whole_number
from minidiff.diffusion.schedule import NoiseSchedule, log_sigma_table, sigma_from_alpha_bar

SPACINGS = ("linspace", "leading", "trailing")
RHO = 7.0  # Karras et al. 2022, sec. 3: their choice, shorter steps near sigma_min where errors show most


def sampling_timesteps(T: int, steps: int | None = None, spacing: str = "linspace") -> list[int]:
    r"""The timesteps a sampler visits, falling: all T of them, or `steps` of them placed as `spacing` says.

    Spacings (Lin et al. 2023, Table 2), e.g. T = 1000, steps = 10:
      linspace  evenly from T-1 to 0, rounded          999, 888, ..., 111, 0
      leading   multiples of k = T // steps            900, 800, ..., 100, 0     (never starts at pure noise)
      trailing  T-1, then every T / steps below it      999, 899, ..., 199, 99   (starts at pure noise)

    Why fewer steps still work (Nichol & Dhariwal 2021, sec. 4, who write them tau_i): any sub-sequence
    t_1 > t_2 > ... > t_S of the T steps defines its own forward process with the same marginals q(x_{t_i} | x0),
    because those depend only on \bar\alpha_{t_i}. Its steps are bigger: from t_{i+1} to t_i the signal shrinks by
    \bar\alpha_{t_i} / \bar\alpha_{t_{i+1}}, so its beta is 1 minus that ratio. Every step function takes the
    pair (alpha_bar, alpha_bar_prev), so the same step serves every sub-sequence.

    Raises TypeError for a steps that is not a whole number (2.5, or 10.0), ValueError for one outside 1 ... T or an
    unknown spacing. Warns for one step with leading spacing: by the definition above it visits only t = 0.
    """
    T = whole_number("T", T, 1, what="the number of diffusion steps")
    steps = T if steps is None else whole_number("steps", steps, 1, T, what=f"how many of the T = {T} steps to visit")
    one_of("spacing", spacing, SPACINGS)
    if spacing == "leading" and steps == 1:
        warnings.warn("one step with leading spacing visits t = 0 only: from pure noise the sampler returns noise, "
                      "and an edit barely changes its input; use linspace or trailing spacing for a single step",
                      stacklevel=2)
    if spacing == "linspace":
        if steps == 1:
            return [T - 1]
        timesteps = torch.arange(steps, dtype=torch.float64) * ((T - 1) / (steps - 1))  # 0 ... T-1
        return timesteps.round().long().flip(0).tolist()
    if spacing == "leading":
        return (torch.arange(steps) * (T // steps)).flip(0).tolist()
    if spacing == "trailing":
        timesteps = T - torch.arange(steps, dtype=torch.float64) * (T / steps)  # T, T - T/steps, ...
        return (timesteps.round().long() - 1).tolist()
    raise ValueError(f"unknown spacing {spacing!r}; choose one of {SPACINGS}")


def timestep_from_sigma(schedule: NoiseSchedule, sigma: float) -> float:
    """The (fractional) timestep whose noise level is sigma, clipped to 0 ... T-1: the inverse of
    `minidiff.diffusion.schedule.alpha_bar_at` (through sigma = sqrt((1 - alpha_bar) / alpha_bar))."""
    log_sigmas = log_sigma_table(schedule)
    log_sigma = math.log(sigma)
    if log_sigma <= float(log_sigmas[0]):
        return 0.0
    if log_sigma >= float(log_sigmas[-1]):
        return float(schedule.T - 1)
    # the two neighbouring steps t_low < t <= t_low + 1 whose noise levels bracket sigma
    t_low = int(torch.searchsorted(log_sigmas, torch.tensor([log_sigma], dtype=torch.float64))) - 1
    w = (log_sigma - float(log_sigmas[t_low])) / float(log_sigmas[t_low + 1] - log_sigmas[t_low])
    return t_low + w


def karras_sigmas(sigma_max: float, sigma_min: float, steps: int, rho: float = RHO) -> list[float]:
    r"""`steps` noise levels from sigma_max down to sigma_min, even in sigma^(1/rho) (Karras et al. 2022, eq. 5).

    The final sigma_N = 0 of eq. 5 is not in the list: it is the clean image, which the sampling loop always ends on.
    """
    if steps == 1:
        return [sigma_max]
    # $\sigma_i = \left(\sigma_{max}^{1/\rho} + \frac{i}{N-1}(\sigma_{min}^{1/\rho} - \sigma_{max}^{1/\rho})\right)^\rho$
    return [(sigma_max ** (1 / rho) + i / (steps - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
            for i in range(steps)]


def karras_timesteps(schedule: NoiseSchedule, timesteps: list[int], rho: float = RHO) -> list[float]:
    """Karras noise levels spanning the same range as `timesteps` (first to last), as fractional timesteps.

    The spacing decides the range: linspace and leading end at t = 0, trailing at T/steps - 1.
    """
    sigma_max = sigma_from_alpha_bar(float(schedule.alpha_bar[timesteps[0]]))
    sigma_min = sigma_from_alpha_bar(float(schedule.alpha_bar[timesteps[-1]]))
    if math.isinf(sigma_max):
        raise ValueError("Karras sigmas need a finite largest noise level, but this schedule has zero terminal SNR "
                         "(sigma = inf at the last step); sample it with ddpm, ddim or dpm++")
    sigmas = karras_sigmas(sigma_max, sigma_min, len(timesteps), rho)
    return [timestep_from_sigma(schedule, sigma) for sigma in sigmas]


def round_half_up(x: float) -> int:
    """x rounded to the nearest whole number, halves up (2.5 -> 3), unlike Python's round (halves to even)."""
    return math.floor(x + 0.5)


def edit_timesteps(T: int, steps: int | None, spacing: str, strength: float | None) -> list[int]:
    r"""The timesteps a sampler visits: `sampling_timesteps(T, steps, spacing)`, or for an edit the same spacing
    laid over the diffusion's first round_half_up(strength * T) timesteps, 0 ... t_0, with
    round_half_up(strength * S) steps (S = steps, or T).

    So the first timestep is $t_0 = \text{strength} \cdot T - 1$ (0-based; rounded), the start SDEdit asks for
    (Meng et al. 2022, sec. 3), for every spacing that starts at its top (linspace, trailing) and within one of the
    edit's steps for leading. strength None: no edit. No steps (an empty list) when strength * S rounds to 0.
    """
    timesteps = sampling_timesteps(T, steps, spacing)  # also checks steps and spacing
    if strength is None:
        return timesteps
    count = round_half_up(strength * len(timesteps))  # steps that run: S' <= T' because S <= T
    if count == 0:
        return []
    return sampling_timesteps(round_half_up(strength * T), count, spacing)  # T' = t_0 + 1 timesteps: 0 ... t_0
