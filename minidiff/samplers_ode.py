r"""Where samplers step (timesteps, noise levels) and the steps that solve the probability-flow ODE: DPM-Solver++(2M),
and Euler and Heun on Karras sigmas.

Papers followed:
- Nichol & Dhariwal 2021, "Improved Denoising Diffusion Probabilistic Models", sec. 4, and Lin, Liu, Li & Yang 2023,
  "Common Diffusion Noise Schedules and Sample Steps are Flawed", Table 2: fewer steps, and where they fall.
- Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models", sec. 4.3: in the coordinates x_t / sqrt(alpha_bar)
  = x0 + sigma eps, deterministic DDIM is Euler's method for an ODE in sigma.
- Karras, Aittala, Aila & Laine 2022, "Elucidating the Design Space of Diffusion-Based Generative Models" (EDM):
  the ODE dx/dsigma = (x - D(x; sigma)) / sigma (eq. 1 and 3 with sigma(t) = t), the VP model in those terms
  (Table 1), the noise levels sigma_i (eq. 5, rho = 7), and deterministic sampling (Algorithm 1): an Euler step,
  corrected by Heun's rule (the trapezoid) except on the last step, into sigma = 0.
- Lu, Zhou, Bao, Chen, Li & Zhu 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic
  Models": the multistep second-order solver DPM-Solver++(2M), Algorithm 2 (its bookkeeping in the sampling loop,
  and its SDE variant, are in `minidiff.samplers_dpm`).

These are pure functions of tensors and noise levels; `minidiff.samplers` runs them in its one loop.
The loop's state is always the noisy image x_t as the network sees it; the Euler and Heun steps move to EDM's
x = x_t / sqrt(alpha_bar) and back inside the step.

Notation (variable -> symbol). t is 0-based, as everywhere in minidiff; it may be fractional here.

    sigma           \sigma           sqrt((1 - alpha_bar) / alpha_bar), the EDM noise level:
                                     x = x_t / sqrt(alpha_bar) = x0 + sigma eps
    sigma_prev      \sigma_{i+1}     the noise level of the next step (0 for the clean image)
    lam             \lambda_t        half_log_snr(alpha_bar) = log(sqrt(alpha_bar) / sqrt(1 - alpha_bar)) = -log(sigma)
    h               h_i              lam_prev - lam: the step's length in lambda
    rho             \rho             the Karras schedule's exponent (7): larger rho spends more steps at low noise
"""

import math

import torch

from minidiff.schedule import NoiseSchedule

SPACINGS = ("linspace", "leading", "trailing")
RHO = 7.0  # Karras et al. 2022, sec. 3: their choice, shorter steps near sigma_min where errors show most


# ------------------------------------------------------------------ timesteps and noise levels


def sampling_timesteps(T: int, steps: int | None = None, spacing: str = "linspace") -> list[int]:
    r"""The timesteps a sampler visits, falling: all T of them, or `steps` of them placed as `spacing` says.

    Spacings (Lin et al. 2023, Table 2), e.g. T = 1000, steps = 10:
      linspace  evenly from T-1 to 0, rounded          999, 888, ..., 111, 0
      leading   multiples of k = T // steps            900, 800, ..., 100, 0     (never starts at pure noise)
      trailing  T-1, then every T / steps below it      999, 899, ..., 199, 99   (starts at pure noise)

    Why fewer steps still work (Nichol & Dhariwal 2021, sec. 4): any sub-sequence tau_1 < ... < tau_S of the
    T steps defines its own forward process with the same marginals q(x_tau | x0), because those depend only
    on \bar\alpha_tau. Its steps are bigger: from tau_{i-1} to tau_i the signal shrinks by
    \bar\alpha_{tau_i} / \bar\alpha_{tau_{i-1}}, so its beta is 1 minus that ratio. Every step function takes the
    pair (alpha_bar, alpha_bar_prev), so the same step serves every sub-sequence.
    """
    steps = T if steps is None else steps
    if not 1 <= steps <= T:
        raise ValueError(f"steps must lie in 1 ... T = {T}, got {steps}")
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




def sigma_from_alpha_bar(alpha_bar: float) -> float:
    """The EDM noise level of a step with signal alpha_bar; infinite at zero SNR (Karras et al. 2022, Table 1, VP)."""
    if alpha_bar == 0.0:
        return math.inf
    # $\sigma = \sqrt{(1 - \bar\alpha) / \bar\alpha}$
    return math.sqrt((1.0 - alpha_bar) / alpha_bar)


def alpha_bar_from_sigma(sigma: float) -> float:
    """The inverse of `sigma_from_alpha_bar`: alpha_bar = 1 / (1 + sigma^2)."""
    # $\bar\alpha = 1 / (1 + \sigma^2)$
    return 1.0 / (1.0 + sigma**2)


def half_log_snr(alpha_bar: float) -> float:
    r"""DPM-Solver's time variable lambda = log(sqrt(alpha_bar) / sqrt(1 - alpha_bar)) = log(SNR) / 2 = -log(sigma).

    +inf for the clean image (alpha_bar = 1), -inf at zero SNR (alpha_bar = 0).
    """
    if alpha_bar == 1.0:
        return math.inf
    if alpha_bar == 0.0:
        return -math.inf
    # $\lambda = \log \sqrt{\bar\alpha} - \log \sqrt{1 - \bar\alpha}$  (Lu et al. 2022b)
    return 0.5 * (math.log(alpha_bar) - math.log1p(-alpha_bar))


def log_sigma_table(schedule: NoiseSchedule) -> torch.Tensor:
    """log sigma at every integer timestep (T,), float64; rising with t (+inf at zero terminal SNR)."""
    # $\log\sigma_t = \tfrac12 (\log(1 - \bar\alpha_t) - \log\bar\alpha_t)$
    return 0.5 * (torch.log1p(-schedule.alpha_bar) - torch.log(schedule.alpha_bar))


def alpha_bar_at(schedule: NoiseSchedule, t: float) -> float:
    """alpha_bar at a timestep: the table's value at an integer t; between two steps, log sigma interpolated linearly.

    Fractional timesteps come from Karras sigmas (`timestep_from_sigma`); the network, which was trained on integer
    t, is asked at them as they are (its sinusoidal time embedding takes any real t).
    """
    if float(t).is_integer():
        return float(schedule.alpha_bar[int(t)])
    t_low = math.floor(t)
    w = t - t_low
    log_sigmas = log_sigma_table(schedule)
    log_sigma = (1.0 - w) * float(log_sigmas[t_low]) + w * float(log_sigmas[t_low + 1])
    return alpha_bar_from_sigma(math.exp(log_sigma))


def timestep_from_sigma(schedule: NoiseSchedule, sigma: float) -> float:
    """The (fractional) timestep whose noise level is sigma: the inverse of `alpha_bar_at`, clipped to 0 ... T-1."""
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


# ------------------------------------------------------------------ steps


def euler_step(x_t: torch.Tensor, eps: torch.Tensor, sigma: float, sigma_prev: float) -> torch.Tensor:
    r"""One step of Euler's method for the probability-flow ODE, from noise level sigma to sigma_prev.

    In EDM's coordinates x = x_t / sqrt(alpha_bar) = x0 + sigma eps the ODE reads dx/dsigma = (x - x0) / sigma = eps
    (Karras et al. 2022, eq. 1 and 3), so a step is a straight line along eps. This is DDIM with eta = 0
    (Song et al. 2021, sec. 4.3), written in sigma.
    """
    # 1. from the network's x_t to EDM's x (Table 1, VP: $s = 1/\sqrt{1+\sigma^2}$):
    # $x = x_t / \sqrt{\bar\alpha} = x_t \sqrt{1 + \sigma^2}$
    x = x_t * math.sqrt(1.0 + sigma**2)
    # 2. the Euler step of Algorithm 1 (Karras et al. 2022):
    # $d_i = (x_i - D_\theta(x_i; \sigma_i)) / \sigma_i = \hat\epsilon$, $x_{i+1} = x_i + (\sigma_{i+1} - \sigma_i)\, d_i$
    x_next = x + (sigma_prev - sigma) * eps
    # 3. back to the network's coordinates at the new noise level
    return x_next / math.sqrt(1.0 + sigma_prev**2)


def heun_step(x_t: torch.Tensor, eps: torch.Tensor, eps_next: torch.Tensor, sigma: float,
              sigma_prev: float) -> torch.Tensor:
    r"""Heun's correction of an Euler step: step again from x_t, along the average of the slopes at both ends.

    eps is the prediction at (x_t, sigma); eps_next the prediction at the Euler step's result, at sigma_prev
    (Karras et al. 2022, Algorithm 1, the second-order correction; never into sigma_prev = 0, where it is undefined).
    """
    x = x_t * math.sqrt(1.0 + sigma**2)  # EDM's x, as in `euler_step`
    # $x_{i+1} = x_i + (\sigma_{i+1} - \sigma_i)\left(\tfrac12 d_i + \tfrac12 d'_i\right)$, with $d = \hat\epsilon$
    x_next = x + (sigma_prev - sigma) * (0.5 * eps + 0.5 * eps_next)
    return x_next / math.sqrt(1.0 + sigma_prev**2)


def dpm_solver_2m_x0(x0: torch.Tensor, alpha_bar: float, alpha_bar_prev: float, x0_earlier: torch.Tensor | None = None,
                     alpha_bar_earlier: float | None = None) -> torch.Tensor:
    r"""The x0 that DPM-Solver++(2M) holds over a step from alpha_bar to alpha_bar_prev (Lu et al. 2022b, Algorithm 2).

    First order (x0_earlier = None): the prediction itself. Second order: x0 extrapolated linearly in lambda from
    the prediction one step earlier (x0_earlier, made at alpha_bar_earlier), which costs no network evaluation.
    The ODE step below and the SDE step (`minidiff.samplers_dpm`) both use it.
    """
    if x0_earlier is None:
        return x0
    # $h_i = \lambda_{t_i} - \lambda_{t_{i-1}}$, $r_i = h_{i-1} / h_i$,
    # $D_i = (1 + \frac{1}{2 r_i}) x_\theta(t_{i-1}) - \frac{1}{2 r_i} x_\theta(t_{i-2})$
    lam = half_log_snr(alpha_bar)
    h = half_log_snr(alpha_bar_prev) - lam
    r = (lam - half_log_snr(alpha_bar_earlier)) / h
    return (1.0 + 1.0 / (2.0 * r)) * x0 - 1.0 / (2.0 * r) * x0_earlier


def dpm_solver_2m_step(x_t: torch.Tensor, x0: torch.Tensor, alpha_bar: float, alpha_bar_prev: float,
                       x0_earlier: torch.Tensor | None = None, alpha_bar_earlier: float | None = None) -> torch.Tensor:
    r"""One step of DPM-Solver++(2M) (Lu et al. 2022b, Algorithm 2), from x_t to x_prev given the predicted x0.

    DPM-Solver++ integrates the ODE exactly for the part that is linear in x_t and approximates the predicted x0
    over the step by `dpm_solver_2m_x0`. First order (x0_earlier = None) holds x0 constant: that is DDIM. Second
    order extrapolates x0 from the prediction one step earlier (x0_earlier, made at alpha_bar_earlier).
    """
    # 1. the step's length in lambda: $h_i = \lambda_{t_i} - \lambda_{t_{i-1}}$
    h = half_log_snr(alpha_bar_prev) - half_log_snr(alpha_bar)

    # 2. the x0 to hold over the step: $D_i$, first or second order
    D = dpm_solver_2m_x0(x0, alpha_bar, alpha_bar_prev, x0_earlier, alpha_bar_earlier)

    # 3. the update of Algorithm 2 (Lu et al. 2022b), whose $\alpha_t = \sqrt{\bar\alpha_t}$, $\sigma_t = \sqrt{1 - \bar\alpha_t}$:
    # $\tilde x_{t_i} = \frac{\sigma_{t_i}}{\sigma_{t_{i-1}}} \tilde x_{t_{i-1}} - \alpha_{t_i} (e^{-h_i} - 1) D_i$
    noise_ratio = math.sqrt((1.0 - alpha_bar_prev) / (1.0 - alpha_bar))  # their sigma_{t_i} / sigma_{t_{i-1}}
    exp_minus_h = math.exp(-h)  # 0 into the clean image, where h = inf
    return noise_ratio * x_t - math.sqrt(alpha_bar_prev) * (exp_minus_h - 1.0) * D


def euler_update(x_t: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, alpha_bar: float,
                 alpha_bar_prev: float) -> torch.Tensor:
    """`euler_step` in the sampling loop's terms: noise levels as alpha_bar (x0 is not needed: eps is the slope)."""
    return euler_step(x_t, eps, sigma_from_alpha_bar(alpha_bar), sigma_from_alpha_bar(alpha_bar_prev))


def heun_correction(x_t: torch.Tensor, eps: torch.Tensor, eps_next: torch.Tensor, alpha_bar: float,
                    alpha_bar_prev: float) -> torch.Tensor:
    """`heun_step` in the sampling loop's terms: the correction after an `euler_update`."""
    return heun_step(x_t, eps, eps_next, sigma_from_alpha_bar(alpha_bar), sigma_from_alpha_bar(alpha_bar_prev))
