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
from collections.abc import Callable

import torch

from minidiff.diffusion.schedule import half_log_snr


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


NoiseSource = Callable[[tuple[int, ...]], torch.Tensor]  # shape -> standard normal noise of that shape


def dpm_solver_sde_2m_step(x_t: torch.Tensor, x0: torch.Tensor, alpha_bar: float, alpha_bar_prev: float,
                           noise: torch.Tensor, x0_earlier: torch.Tensor | None = None,
                           alpha_bar_earlier: float | None = None) -> torch.Tensor:
    r"""One step of SDE-DPM-Solver++(2M) (Lu et al. 2022b), from x_t to x_prev given the predicted x0 and noise.

    The derivation, in Lu et al.'s letters ($\alpha_t = \sqrt{\bar\alpha_t}$, $\sigma_t = \sqrt{1 - \bar\alpha_t}$,
    $\lambda_t = \log(\alpha_t / \sigma_t)$, the step from $s$ to $t$, $h = \lambda_t - \lambda_s$):
    1. The reverse SDE (Song et al. 2021, eq. 6) with the score $-(x - \alpha_t x_\theta) / \sigma_t^2$ and
       $g^2(t) = -2\sigma_t^2\, d\lambda_t / dt$ (Lu et al. 2022a, sec. 3.1), in lambda:
       $dx = (f - 2\lambda'_t)\, x\, dt + 2\alpha_t x_\theta\, d\lambda + g\, d\bar w$, with $f = (\log\alpha_t)'$.
    2. Its linear part is solved exactly: $x$ is carried from s to t by $\frac{\sigma_t}{\sigma_s} e^{-h}$; the
       x_theta term, integrated against the same factor, is $2\alpha_t \int_{\lambda_s}^{\lambda_t}
       e^{-2(\lambda_t - \lambda)} x_\theta\, d\lambda$; the noise has variance $\sigma_t^2 (1 - e^{-2h})$.
    3. With x_theta held at $D$ over the step (`dpm_solver_2m_x0`: the prediction, or extrapolated from the one
       before), the integral is $\alpha_t (1 - e^{-2h}) D$.
    At h = inf (into the clean image) the step returns D exactly and the noise vanishes; as for the ODE, D is then
    of first order.
    """
    # 1. the step's length in lambda: $h = \lambda_t - \lambda_s$
    h = half_log_snr(alpha_bar_prev) - half_log_snr(alpha_bar)

    # 2. the x0 held over the step, first or second order (the same as the ODE solver's)
    D = dpm_solver_2m_x0(x0, alpha_bar, alpha_bar_prev, x0_earlier, alpha_bar_earlier)

    # 3. the exact solution of step 2-3 above, our alpha_bar for theirs:
    # $x_t = \frac{\sigma_t}{\sigma_s} e^{-h} x_s + \alpha_t (1 - e^{-2h}) D + \sigma_t \sqrt{1 - e^{-2h}}\, z$
    noise_ratio = math.sqrt((1.0 - alpha_bar_prev) / (1.0 - alpha_bar))  # their sigma_t / sigma_s
    one_minus_exp_minus_2h = -math.expm1(-2.0 * h)  # 1 into the clean image, where h = inf
    return (noise_ratio * math.exp(-h) * x_t + math.sqrt(alpha_bar_prev) * one_minus_exp_minus_2h * D
            + math.sqrt(1.0 - alpha_bar_prev) * math.sqrt(one_minus_exp_minus_2h) * noise)


def dpm_solver_2m_update(noise_source: NoiseSource | None = None
                         ) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float, float], torch.Tensor]:
    """DPM-Solver++(2M)'s update for `minidiff.diffusion.loop.denoising_loop`: (x_t, x0, eps, alpha_bar, alpha_bar_prev)
    -> x_prev, remembering each step's x0 for the next one's second-order estimate.

    noise_source None: the ODE solver (`dpm_solver_2m_step`). A function shape -> N(0, I) noise: the SDE solver
    (`dpm_solver_sde_2m_step`), which draws once per step, except on the last. Both are first order on the first
    step (no earlier x0 yet) and on the last one, into the clean image, which is infinitely long in lambda
    (Lu et al. 2022b, Algorithm 2, takes the first-order step on its first step alone). There the SDE's noise scale
    is 0, so its last step is the ODE's and draws nothing.
    """
    x0_earlier, alpha_bar_earlier = None, None  # the step before's prediction and noise level

    def update(x_t: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, alpha_bar: float,
               alpha_bar_prev: float) -> torch.Tensor:
        nonlocal x0_earlier, alpha_bar_earlier
        if alpha_bar_prev == 1.0:  # the last step: first order, without noise
            x_prev = dpm_solver_2m_step(x_t, x0, alpha_bar, alpha_bar_prev)
        elif noise_source is None:  # second order, or first on the first step, where x0_earlier is still None
            x_prev = dpm_solver_2m_step(x_t, x0, alpha_bar, alpha_bar_prev, x0_earlier, alpha_bar_earlier)
        else:
            x_prev = dpm_solver_sde_2m_step(x_t, x0, alpha_bar, alpha_bar_prev, noise_source(tuple(x_t.shape)),
                                            x0_earlier, alpha_bar_earlier)
        x0_earlier, alpha_bar_earlier = x0, alpha_bar
        return x_prev

    return update
