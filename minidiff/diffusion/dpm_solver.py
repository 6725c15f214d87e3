r"""DPM-Solver++(2M), for the probability-flow ODE and for the reverse SDE: its two steps and its multistep update.

`dpm_solver_2m_step` (the ODE) and `dpm_solver_sde_2m_step` (the SDE) each move x_t to x_prev, holding the
predicted x0 at `dpm_solver_2m_x0` over the step: the prediction itself (first order), or extrapolated from the
step before's (second order, at no extra network evaluation). `dpm_solver_2m_update` remembers that earlier
prediction from one step to the next; it is the update that `minidiff.diffusion.samplers` hands to the one loop,
`minidiff.diffusion.loop.denoising_loop`.

Papers followed:
- Lu, Zhou, Bao, Chen, Li & Zhu 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic
  Models" (Lu et al. 2022b): the multistep second-order solver DPM-Solver++(2M) of the probability-flow ODE,
  Algorithm 2, and SDE-DPM-Solver++(2M), the same multistep solver for the reverse diffusion SDE, written with the
  data prediction x_theta (their appendix on diffusion SDEs).
- Lu, Zhou, Bao, Chen, Li & Zhu 2022, "DPM-Solver: A Fast ODE Solver for Diffusion Probabilistic Model Sampling in
  Around 10 Steps" (Lu et al. 2022a), sec. 3.1: the change of variable from t to their lambda (our ell, below)
  that makes the linear part of the equations exactly solvable.
- Song, Sohl-Dickstein, Kingma, Kumar, Ermon & Poole 2021, "Score-Based Generative Modeling through Stochastic
  Differential Equations" (Song et al. 2021b), eq. (6): the reverse-time SDE.

Why two variants. The ODE maps each x_T to one image; its solvers (DDIM, DPM-Solver++, Euler, Heun) all converge
to the ODE's images as the steps grow, errors in eps included. The SDE adds fresh noise on every step and takes
out more of the old: errors made early are partly forgotten, at the price of a noisier path. For a small model
whose eps is least accurate at high noise, that can give better samples at the same number of network evaluations.

Notation (variable -> symbol). The formulas are written in our letters: Lu et al.'s alpha_t and sigma_t are our
sqrt(alpha_bar) and sqrt(1 - alpha_bar), and their lambda_t is our ell_t, half our log-SNR: ell_t = lambda_t / 2.
A step goes from t down to t_prev; the step before it started at t_earlier.

    half_lambda     \ell_t          half_log_snr(alpha_bar) = log(sqrt(alpha_bar) / sqrt(1 - alpha_bar)) = -log(sigma);
                                    \ell_{prev} at alpha_bar_prev, \ell_{earlier} at alpha_bar_earlier
    h               h               \ell_{prev} - \ell_t: the step's length in ell (> 0: towards the clean image)
    r               r               (\ell_t - \ell_{earlier}) / h: the step before's length over this one's
    D               D               the x0 held over the step (`dpm_solver_2m_x0`): first or second order
    noise           z               standard normal noise, the shape of x_t
"""

import math
from collections.abc import Callable

import torch

from minidiff.diffusion.schedule import half_log_snr


def dpm_solver_2m_x0(x0: torch.Tensor, alpha_bar: float, alpha_bar_prev: float, x0_earlier: torch.Tensor | None = None,
                     alpha_bar_earlier: float | None = None) -> torch.Tensor:
    r"""The x0 that DPM-Solver++(2M) holds over a step from alpha_bar to alpha_bar_prev (Lu et al. 2022b, Algorithm 2).

    First order (x0_earlier = None): the prediction itself. Second order: x0 extrapolated linearly in ell from
    the prediction one step earlier (x0_earlier, made at alpha_bar_earlier), which costs no network evaluation.
    The ODE step (`dpm_solver_2m_step`) and the SDE step (`dpm_solver_sde_2m_step`) below both use it.
    """
    if x0_earlier is None:
        return x0
    # $h = \ell_{prev} - \ell_t$, $r = (\ell_t - \ell_{earlier}) / h$,
    # $D = (1 + \frac{1}{2r})\, \hat x_0 - \frac{1}{2r}\, \hat x_0^{earlier}$
    half_lambda = half_log_snr(alpha_bar)
    h = half_log_snr(alpha_bar_prev) - half_lambda
    r = (half_lambda - half_log_snr(alpha_bar_earlier)) / h
    return (1.0 + 1.0 / (2.0 * r)) * x0 - 1.0 / (2.0 * r) * x0_earlier


def dpm_solver_2m_step(x_t: torch.Tensor, x0: torch.Tensor, alpha_bar: float, alpha_bar_prev: float,
                       x0_earlier: torch.Tensor | None = None, alpha_bar_earlier: float | None = None) -> torch.Tensor:
    r"""One step of DPM-Solver++(2M) (Lu et al. 2022b, Algorithm 2), from x_t to x_prev given the predicted x0.

    DPM-Solver++ integrates the ODE exactly for the part that is linear in x_t and approximates the predicted x0
    over the step by `dpm_solver_2m_x0`. First order (x0_earlier = None) holds x0 constant: that is DDIM. Second
    order extrapolates x0 from the prediction one step earlier (x0_earlier, made at alpha_bar_earlier).
    """
    # 1. the step's length in ell: $h = \ell_{prev} - \ell_t$
    h = half_log_snr(alpha_bar_prev) - half_log_snr(alpha_bar)

    # 2. the x0 to hold over the step: $D$, first or second order
    D = dpm_solver_2m_x0(x0, alpha_bar, alpha_bar_prev, x0_earlier, alpha_bar_earlier)

    # 3. the update of Algorithm 2 (Lu et al. 2022b), in our letters:
    # $x_{prev} = \frac{\sqrt{1 - \bar\alpha_{prev}}}{\sqrt{1 - \bar\alpha_t}}\, x_t - \sqrt{\bar\alpha_{prev}}\, (e^{-h} - 1)\, D$
    noise_ratio = math.sqrt((1.0 - alpha_bar_prev) / (1.0 - alpha_bar))
    exp_minus_h = math.exp(-h)  # 0 into the clean image, where h = inf
    return noise_ratio * x_t - math.sqrt(alpha_bar_prev) * (exp_minus_h - 1.0) * D


NoiseSource = Callable[[tuple[int, ...]], torch.Tensor]  # shape -> standard normal noise of that shape


def dpm_solver_sde_2m_step(x_t: torch.Tensor, x0: torch.Tensor, alpha_bar: float, alpha_bar_prev: float,
                           noise: torch.Tensor, x0_earlier: torch.Tensor | None = None,
                           alpha_bar_earlier: float | None = None) -> torch.Tensor:
    r"""One step of SDE-DPM-Solver++(2M) (Lu et al. 2022b), from x_t to x_prev given the predicted x0 and noise.

    The derivation, in our letters (Lu et al.'s $\alpha_t$, $\sigma_t$, $\lambda_t$ are our $\sqrt{\bar\alpha_t}$,
    $\sqrt{1 - \bar\alpha_t}$, $\ell_t = \log(\sqrt{\bar\alpha_t} / \sqrt{1 - \bar\alpha_t})$; the step goes from $t$ to
    $t_{prev}$, $h = \ell_{prev} - \ell_t$):
    1. The reverse SDE (Song et al. 2021b, eq. 6) with the score $-(x - \sqrt{\bar\alpha_t}\, x_\theta) / (1 - \bar\alpha_t)$
       and the squared diffusion coefficient $-2 (1 - \bar\alpha_t)\, d\ell_t / dt$ (Lu et al. 2022a, sec. 3.1, their
       $g^2(t)$), in ell: $dx = ((\log\sqrt{\bar\alpha_t})' - 2\ell'_t)\, x\, dt + 2\sqrt{\bar\alpha_t}\, x_\theta\, d\ell$
       $+ \sqrt{-2 (1 - \bar\alpha_t)\, \ell'_t}\, d\bar{\mathcal W}$, with $\bar{\mathcal W}$ a reverse-time Wiener process.
    2. Its linear part is solved exactly: $x$ is carried from $t$ to $t_{prev}$ by
       $\frac{\sqrt{1 - \bar\alpha_{prev}}}{\sqrt{1 - \bar\alpha_t}} e^{-h}$; the x_theta term, integrated against the
       same factor, is $2\sqrt{\bar\alpha_{prev}} \int_{\ell_t}^{\ell_{prev}} e^{-2(\ell_{prev} - \ell)} x_\theta\, d\ell$;
       the noise has variance $(1 - \bar\alpha_{prev}) (1 - e^{-2h})$.
    3. With x_theta held at $D$ over the step (`dpm_solver_2m_x0`: the prediction, or extrapolated from the one
       before), the integral is $\sqrt{\bar\alpha_{prev}}\, (1 - e^{-2h})\, D$.
    At h = inf (into the clean image) the step returns D exactly and the noise vanishes; as for the ODE, D is then
    of first order.
    """
    # 1. the step's length in ell: $h = \ell_{prev} - \ell_t$
    h = half_log_snr(alpha_bar_prev) - half_log_snr(alpha_bar)

    # 2. the x0 held over the step, first or second order (the same as the ODE solver's)
    D = dpm_solver_2m_x0(x0, alpha_bar, alpha_bar_prev, x0_earlier, alpha_bar_earlier)

    # 3. the exact solution of steps 2-3 above:
    # $x_{prev} = \frac{\sqrt{1 - \bar\alpha_{prev}}}{\sqrt{1 - \bar\alpha_t}} e^{-h} x_t + \sqrt{\bar\alpha_{prev}} (1 - e^{-2h}) D
    #   + \sqrt{1 - \bar\alpha_{prev}} \sqrt{1 - e^{-2h}}\, z$
    noise_ratio = math.sqrt((1.0 - alpha_bar_prev) / (1.0 - alpha_bar))
    one_minus_exp_minus_2h = -math.expm1(-2.0 * h)  # 1 into the clean image, where h = inf
    return (noise_ratio * math.exp(-h) * x_t + math.sqrt(alpha_bar_prev) * one_minus_exp_minus_2h * D
            + math.sqrt(1.0 - alpha_bar_prev) * math.sqrt(one_minus_exp_minus_2h) * noise)


def dpm_solver_2m_update(noise_source: NoiseSource | None = None
                         ) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float, float], torch.Tensor]:
    """DPM-Solver++(2M)'s update for `minidiff.diffusion.loop.denoising_loop`: (x_t, x0, eps, alpha_bar, alpha_bar_prev)
    -> x_prev, remembering each step's x0 for the next one's second-order estimate.

    noise_source None: the ODE solver (`dpm_solver_2m_step`). A function shape -> N(0, I) noise: the SDE solver
    (`dpm_solver_sde_2m_step`), which draws once per step, except on the last. Both are first order on the first
    step (no earlier x0 yet) and on the last one, into the clean image, which is infinitely long in ell
    (Lu et al. 2022b, Algorithm 2, takes the first-order step on its first step alone). There the SDE's noise scale
    is 0, so its last step is the ODE's and draws nothing. After a jump back up to more noise (RePaint's
    resampling, `minidiff.diffusion.editing.repaint_path`) the step is first order again.
    """
    x0_earlier, alpha_bar_earlier = None, None  # the step before's prediction and noise level

    def update(x_t: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, alpha_bar: float,
               alpha_bar_prev: float) -> torch.Tensor:
        nonlocal x0_earlier, alpha_bar_earlier
        if alpha_bar_earlier is not None and alpha_bar_earlier >= alpha_bar:  # after a jump back up (RePaint):
            x0_earlier, alpha_bar_earlier = None, None  # the earlier prediction is not from a noisier step: forget it
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
