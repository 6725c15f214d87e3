"""Noise schedules: beta_t -> alpha_bar_t, SNR, the posterior coefficients, EDM's noise level sigma, half the log-SNR.

A schedule says how much noise the forward process adds at each of its T steps.
Everything else in minidiff reads the numbers from one `NoiseSchedule`. The functions at the end give a step's
alpha_bar in the coordinates other papers use (EDM's sigma; DPM-Solver's time, our ell = lambda / 2, half the
log-SNR lambda) and read alpha_bar between two integer steps, where Karras sigmas fall
(`minidiff.diffusion.timesteps`).

Papers followed:
- Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models" (DDPM): linear betas, eq. (4), (6), (7).
- Nichol & Dhariwal 2021, "Improved Denoising Diffusion Probabilistic Models": cosine alpha_bar, eq. (17);
  the posterior of a bigger step, for samplers that skip timesteps, sec. 4.
- Chen 2023, "On the Importance of Noise Scheduling for Diffusion Models": sigmoid alpha_bar, Algorithm 1.
- Lin, Liu, Li & Yang 2023, "Common Diffusion Noise Schedules and Sample Steps are Flawed":
  zero terminal SNR, Algorithm 1.
- Karras, Aittala, Aila & Laine 2022, "Elucidating the Design Space of Diffusion-Based Generative Models" (EDM),
  Table 1 (VP): the noise level sigma = sqrt((1 - alpha_bar) / alpha_bar).
- Lu, Zhou, Bao, Chen, Li & Zhu 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic
  Models" (Lu et al. 2022b): their time variable lambda, our ell = log(SNR) / 2 (our lambda is log(SNR)).

Convention: t is 0-based. t = 0 is the first step of noise, t = T - 1 the last.
All tables are float64 so that later products stay accurate; they are cast to the data's dtype when used.
"""

import math
from dataclasses import dataclass

import torch

SCHEDULES = ("linear", "cosine", "sigmoid")


def check_T(T: int) -> None:
    """T, the number of diffusion steps, is a whole number >= 1 (this layer's own copy of
    `minidiff.diffusion.arguments.whole_number`, which sits above this module)."""
    if isinstance(T, bool) or not isinstance(T, int):
        raise TypeError(f"T must be a whole number >= 1 (the number of diffusion steps), got {T!r} "
                        f"({type(T).__name__})")
    if T < 1:
        raise ValueError(f"T must be a whole number >= 1 (the number of diffusion steps), got {T}")


def linear_betas(T: int, beta_start: float | None = None, beta_end: float | None = None) -> torch.Tensor:
    """DDPM's linear schedule (Ho et al. 2020, sec. 4): betas evenly spaced from beta_start to beta_end.

    By default beta_start = 0.1 / T and beta_end = 20 / T, which is DDPM's 1e-4 ... 0.02 at T = 1000 and
    keeps the total amount of noise about the same for other T (Nichol & Dhariwal 2021, sec. 3.2).
    """
    check_T(T)
    if beta_end is None and T <= 20:
        raise ValueError(f"the default linear schedule needs T > 20 (its last beta, 20 / T = {20 / T:.3g}, "
                         "must stay below 1); use 'cosine' or 'sigmoid' for fewer steps, or pass beta_end")
    beta_start = 0.1 / T if beta_start is None else beta_start
    beta_end = 20.0 / T if beta_end is None else beta_end
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)


def betas_from_alpha_bar(alpha_bar_fn, T: int, max_beta: float = 0.999) -> torch.Tensor:
    """Discretise a continuous alpha_bar(tau), tau in [0, 1], into T betas.

    Each step removes the fraction of signal that alpha_bar loses between tau = t/T and (t+1)/T;
    betas are clipped at max_beta so the last step is not a singular "all noise" step
    (Nichol & Dhariwal 2021, sec. 3.2).
    """
    check_T(T)
    tau = torch.arange(T + 1, dtype=torch.float64) / T
    alpha_bar_cont = alpha_bar_fn(tau)
    # $\beta_t = 1 - \bar\alpha(\tau_{t+1}) / \bar\alpha(\tau_t)$
    betas = 1.0 - alpha_bar_cont[1:] / alpha_bar_cont[:-1]
    return betas.clamp(max=max_beta)


def cosine_alpha_bar(tau: torch.Tensor, s: float = 0.008) -> torch.Tensor:
    """Continuous cosine alpha_bar(tau) with offset s (Nichol & Dhariwal 2021, eq. 17), unnormalised."""
    # $f(t) = \cos^2\left(\frac{t/T + s}{1 + s} \cdot \frac{\pi}{2}\right)$
    return torch.cos((tau + s) / (1 + s) * math.pi / 2) ** 2


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """The cosine schedule (Nichol & Dhariwal 2021, eq. 17), with its beta clip at 0.999."""
    if not 0.0 <= s < math.inf:  # NaN fails too
        raise ValueError(f"s, the cosine schedule's offset, must be a number >= 0 (Nichol & Dhariwal use 0.008), "
                         f"got {s}")
    return betas_from_alpha_bar(lambda tau: cosine_alpha_bar(tau, s), T, max_beta)


def sigmoid_alpha_bar(tau: torch.Tensor, start: float = -3.0, end: float = 3.0, temperature: float = 1.0) -> torch.Tensor:
    """Continuous sigmoid alpha_bar(tau) (Chen 2023, Algorithm 1), normalised to 1 at tau = 0 and 0 at tau = 1."""
    v_start = torch.sigmoid(torch.tensor(start / temperature, dtype=torch.float64))
    v_end = torch.sigmoid(torch.tensor(end / temperature, dtype=torch.float64))
    # $\bar\alpha(\tau) = \frac{v_{end} - \operatorname{sigmoid}((\tau\,(\mathrm{end} - \mathrm{start}) + \mathrm{start})
    #   / \mathrm{temperature})}{v_{end} - v_{start}}$
    return (v_end - torch.sigmoid((tau * (end - start) + start) / temperature)) / (v_end - v_start)


def sigmoid_betas(T: int, start: float = -3.0, end: float = 3.0, temperature: float = 1.0, max_beta: float = 0.999) -> torch.Tensor:
    """The sigmoid schedule (Chen 2023, Algorithm 1), discretised like the cosine one."""
    if not (0.0 < temperature < math.inf and -math.inf < start < end < math.inf):  # NaN fails too
        raise ValueError(f"the sigmoid schedule needs temperature > 0 and start < end, finite (Chen 2023: 1, -3, 3), "
                         f"got temperature = {temperature}, start = {start}, end = {end}")
    return betas_from_alpha_bar(lambda tau: sigmoid_alpha_bar(tau, start, end, temperature), T, max_beta)


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Shift and scale sqrt(alpha_bar) so the last step has SNR exactly 0 (Lin et al. 2023, Algorithm 1).

    The first step's sqrt(alpha_bar) is kept, so SNR at t = 0 is unchanged; every step in between is
    stretched linearly in sqrt(alpha_bar). The last beta becomes 1: x_T holds no trace of the image.
    """
    sqrt_alpha_bar = torch.cumprod(1.0 - betas, dim=0).sqrt()
    first, last = sqrt_alpha_bar[0].clone(), sqrt_alpha_bar[-1].clone()
    # $\sqrt{\bar\alpha_t} \leftarrow (\sqrt{\bar\alpha_t} - \sqrt{\bar\alpha_T}) \cdot \frac{\sqrt{\bar\alpha_1}}{\sqrt{\bar\alpha_1} - \sqrt{\bar\alpha_T}}$
    sqrt_alpha_bar = (sqrt_alpha_bar - last) * first / (first - last)
    alpha_bar = sqrt_alpha_bar**2
    # $\alpha_t = \bar\alpha_t / \bar\alpha_{t-1}$, with $\alpha_1 = \bar\alpha_1$
    alphas = torch.cat([alpha_bar[:1], alpha_bar[1:] / alpha_bar[:-1]])
    return 1.0 - alphas


def posterior_coefficients(alpha_bar: torch.Tensor | float, alpha_bar_prev: torch.Tensor | float
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""The posterior q(x_prev | x_t, x0) of one step from alpha_bar_prev down to alpha_bar (Ho et al. 2020, eq. 6-7).

    The one place minidiff writes the posterior. For consecutive steps it gives the schedule's tables; for the
    bigger steps of a sampler that skips timesteps (Nichol & Dhariwal 2021, sec. 4) the step's own
    $\beta = 1 - \bar\alpha_t / \bar\alpha_{t_{prev}}$ takes the place of $\beta_t$. Floats or tensors of any
    shape, computed in float64. Returns (coef_x0, coef_xt, variance): the posterior mean is
    coef_x0 * x0 + coef_xt * x_t and its variance is beta_tilde.
    """
    alpha_bar = torch.as_tensor(alpha_bar, dtype=torch.float64)
    alpha_bar_prev = torch.as_tensor(alpha_bar_prev, dtype=torch.float64)
    # $\alpha_t = \bar\alpha_t / \bar\alpha_{t-1}, \quad \beta_t = 1 - \alpha_t$
    alpha = alpha_bar / alpha_bar_prev
    beta = 1.0 - alpha
    # eq. 7: $\tilde\mu_t = \frac{\sqrt{\bar\alpha_{t-1}}\beta_t}{1-\bar\alpha_t} x_0
    #          + \frac{\sqrt{\alpha_t}(1-\bar\alpha_{t-1})}{1-\bar\alpha_t} x_t$
    coef_x0 = alpha_bar_prev.sqrt() * beta / (1.0 - alpha_bar)
    coef_xt = alpha.sqrt() * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar)
    # $\tilde\beta_t = \frac{1 - \bar\alpha_{t-1}}{1 - \bar\alpha_t} \beta_t$  (eq. 7)
    variance = (1.0 - alpha_bar_prev) / (1.0 - alpha_bar) * beta
    return coef_x0, coef_xt, variance


@dataclass
class NoiseSchedule:
    """Every per-step number of the forward process and its posterior, for T steps (index t = 0 ... T-1).

    Build one with `NoiseSchedule.from_betas(betas)` or `make_schedule("cosine", T)`.
    """

    betas: torch.Tensor  # (T,) beta_t: variance of the noise added at step t
    alphas: torch.Tensor  # (T,) alpha_t = 1 - beta_t
    alpha_bar: torch.Tensor  # (T,) alpha_bar_t = prod_{i<=t} alpha_i: signal left after t+1 steps
    alpha_bar_prev: torch.Tensor  # (T,) alpha_bar_{t-1}, with alpha_bar_{-1} = 1 (the clean image)
    snr: torch.Tensor  # (T,) signal-to-noise ratio alpha_bar_t / (1 - alpha_bar_t)
    log_snr: torch.Tensor  # (T,) log SNR (lambda_t); -inf where SNR is 0
    posterior_variance: torch.Tensor  # (T,) beta_tilde_t, variance of q(x_{t-1} | x_t, x0)
    posterior_coef_x0: torch.Tensor  # (T,) weight of x0 in the posterior mean
    posterior_coef_xt: torch.Tensor  # (T,) weight of x_t in the posterior mean

    @property
    def T(self) -> int:
        """Number of diffusion steps."""
        return len(self.betas)

    @classmethod
    def from_betas(cls, betas: torch.Tensor) -> "NoiseSchedule":
        """Derive every table from the betas alone (Ho et al. 2020, eq. 4 and 7)."""
        if not isinstance(betas, (torch.Tensor, list, tuple)):
            raise TypeError(f"betas must be a 1-D tensor (or list) of numbers in (0, 1], got {type(betas).__name__}")
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.ndim != 1 or len(betas) < 1:
            raise ValueError(f"betas must be a non-empty 1-D tensor, got shape {tuple(betas.shape)}")
        if not bool(((betas > 0) & (betas <= 1)).all()):
            raise ValueError("every beta must lie in (0, 1]; check the schedule's parameters")
        alphas = 1.0 - betas
        # $\bar\alpha_t = \prod_{i \le t} \alpha_i$
        alpha_bar = torch.cumprod(alphas, dim=0)
        alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
        # $\mathrm{SNR}_t = \bar\alpha_t / (1 - \bar\alpha_t)$
        snr = alpha_bar / (1.0 - alpha_bar)
        # the posterior of each step, q(x_{t-1} | x_t, x0) (Ho et al. 2020, eq. 6-7)
        posterior_coef_x0, posterior_coef_xt, posterior_variance = posterior_coefficients(alpha_bar, alpha_bar_prev)
        return cls(betas, alphas, alpha_bar, alpha_bar_prev, snr, snr.log(), posterior_variance,
                   posterior_coef_x0, posterior_coef_xt)


def make_schedule(name: str = "linear", T: int = 1000, zero_terminal_snr: bool = False) -> NoiseSchedule:
    """Build a named schedule ("linear", "cosine" or "sigmoid") of T steps, optionally rescaled to zero terminal SNR."""
    check_T(T)
    if not isinstance(zero_terminal_snr, bool):
        raise TypeError(f"zero_terminal_snr must be True or False, got {zero_terminal_snr!r}")
    if name == "linear":
        betas = linear_betas(T)
    elif name == "cosine":
        betas = cosine_betas(T)
    elif name == "sigmoid":
        betas = sigmoid_betas(T)
    else:
        raise ValueError(f"unknown schedule {name!r}; choose one of {SCHEDULES}")
    if T < 2 and zero_terminal_snr:
        raise ValueError("zero terminal SNR needs at least T = 2 steps")
    if zero_terminal_snr:
        betas = rescale_zero_terminal_snr(betas)
    return NoiseSchedule.from_betas(betas)


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
    r"""DPM-Solver's time variable $\ell$ = log(sqrt(alpha_bar) / sqrt(1 - alpha_bar)) = log(SNR) / 2 = -log(sigma).

    Half our log-SNR $\lambda$, $\ell = \lambda / 2$: Lu et al. (2022a, 2022b) write it $\lambda$.

    +inf for the clean image (alpha_bar = 1), -inf at zero SNR (alpha_bar = 0).
    """
    if alpha_bar == 1.0:
        return math.inf
    if alpha_bar == 0.0:
        return -math.inf
    # $\ell = \log \sqrt{\bar\alpha} - \log \sqrt{1 - \bar\alpha}$  (Lu et al. 2022b, who write it $\lambda$)
    return 0.5 * (math.log(alpha_bar) - math.log1p(-alpha_bar))


def log_sigma_table(schedule: NoiseSchedule) -> torch.Tensor:
    """log sigma at every integer timestep (T,), float64; rising with t (+inf at zero terminal SNR)."""
    # $\log\sigma_t = \tfrac12 (\log(1 - \bar\alpha_t) - \log\bar\alpha_t)$
    return 0.5 * (torch.log1p(-schedule.alpha_bar) - torch.log(schedule.alpha_bar))


def alpha_bar_at(schedule: NoiseSchedule, t: float) -> float:
    """alpha_bar at a timestep: the table's value at an integer t; between two steps, log sigma interpolated linearly.

    Fractional timesteps come from Karras sigmas (`minidiff.diffusion.timesteps.timestep_from_sigma`); the network,
    which was trained on integer t, is asked at them as they are (its sinusoidal time embedding takes any real t).
    """
    if float(t).is_integer():
        return float(schedule.alpha_bar[int(t)])
    t_low = math.floor(t)
    w = t - t_low
    log_sigmas = log_sigma_table(schedule)
    log_sigma = (1.0 - w) * float(log_sigmas[t_low]) + w * float(log_sigmas[t_low + 1])
    return alpha_bar_from_sigma(math.exp(log_sigma))
