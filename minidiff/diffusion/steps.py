r"""Sampler steps: one move from x_t to x_prev, given the network's prediction read as (x0, eps).

DDPM's ancestral step, DDIM's step, and Euler's and Heun's steps for the probability-flow ODE. Each is a pure
function of tensors and two noise levels, (alpha_bar, alpha_bar_prev), so the same step serves every sub-sequence
of timesteps. The loop that calls them is `minidiff.diffusion.loop`, the samplers that pick their timesteps are
`minidiff.diffusion.samplers`, and DPM-Solver++'s steps are in `minidiff.diffusion.dpm_solver`.

Papers followed:
- Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models": ancestral sampling, Algorithm 2;
  the posterior q(x_{t-1} | x_t, x0), eq. (6)-(7) (`minidiff.diffusion.schedule.posterior_coefficients`);
  the two variance choices beta and beta_tilde, sec. 3.2.
- Nichol & Dhariwal 2021, "Improved Denoising Diffusion Probabilistic Models", sec. 4: a step that skips
  timesteps has its beta recomputed from the pair of alpha_bar values.
- Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models" (DDIM): the step eq. (12) with the step variance
  Sigma_t(eta) of eq. (16) (the paper's sigma_t(eta)^2); eta = 0 is deterministic, eta = 1 is DDPM. Sec. 4.3: in
  the coordinates x_t / sqrt(alpha_bar) = x0 + sigma eps, deterministic DDIM is Euler's method for an ODE in sigma.
- Karras, Aittala, Aila & Laine 2022, "Elucidating the Design Space of Diffusion-Based Generative Models" (EDM):
  the ODE dx/dsigma = (x - D(x; sigma)) / sigma (eq. 1 and 3 with sigma(t) = t), the VP model in those terms
  (Table 1), and deterministic sampling (Algorithm 1): an Euler step, corrected by Heun's rule (the trapezoid).

The sampling loop's state is always the noisy image x_t as the network sees it; the Euler and Heun steps move to
EDM's x = x_t / sqrt(alpha_bar) and back inside the step.

Notation (variable -> symbol in Ho et al. 2020). t is 0-based: t = 0 is one step of noise, t = T-1 the last.

    x_t             x_t            the noisy image at timestep t
    x_prev          x_{t-1}        the image at the next timestep the sampler visits (t_prev < t)
    alpha_bar       \bar\alpha_t   signal kept at t;  alpha_bar_prev = \bar\alpha_{t_prev}, 1 for the clean image
                                   (DDIM's paper writes \alpha_t for it)
    beta            \beta_t        1 - \bar\alpha_t / \bar\alpha_{t_prev}: the noise added from t_prev to t
    eps             \epsilon_\theta(x_t, t)   the predicted noise
    x0              \hat x_0       the predicted clean image
    eta             \eta           DDIM's share of fresh noise per step: 0 deterministic ... 1 like DDPM
    step_variance   \Sigma_t       the variance of the fresh noise one reverse step adds (DDPM's and DDIM's
                                   sigma_t^2); not the EDM sigma below
    sigma           \sigma         sqrt((1 - alpha_bar) / alpha_bar), the Karras/EDM noise level;
                                   sigma_prev at alpha_bar_prev (0 for the clean image)
    noise           z              fresh standard normal noise, the shape of x_t
"""

import math

import torch

from minidiff.diffusion.schedule import posterior_coefficients, sigma_from_alpha_bar

VARIANCES = ("beta_tilde", "beta")


def ddpm_step(x_t: torch.Tensor, x0: torch.Tensor, alpha_bar: float, alpha_bar_prev: float,
              noise: torch.Tensor | None = None, variance: str = "beta_tilde") -> torch.Tensor:
    r"""One step of DDPM ancestral sampling (Ho et al. 2020, Algorithm 2), from x_t to x_prev given a predicted x0.

    The mean is the posterior mean of q(x_prev | x_t, x0) (eq. 7) with x0 replaced by its prediction;
    the variance is beta_tilde (that posterior's variance) or beta (sec. 3.2). `noise` = None gives the mean alone.
    """
    if variance not in VARIANCES:
        raise ValueError(f"unknown variance {variance!r}; choose one of {VARIANCES}")
    # 1. the posterior of this step, from alpha_bar_prev down to alpha_bar (the schedule's own step for consecutive
    # t, a bigger one for respaced steps): its mean's two weights and its variance beta_tilde, eq. (7)
    coef_x0, coef_xt, beta_tilde = (float(c) for c in posterior_coefficients(alpha_bar, alpha_bar_prev))

    # 2. the posterior mean with x0 replaced by its prediction:
    # $\tilde\mu_t = \frac{\sqrt{\bar\alpha_{t-1}}\beta_t}{1-\bar\alpha_t} \hat x_0 + \frac{\sqrt{\alpha_t}(1-\bar\alpha_{t-1})}{1-\bar\alpha_t} x_t$
    mean = coef_x0 * x0 + coef_xt * x_t
    if noise is None:
        return mean

    # 3. the variance $\Sigma_t$ (sec. 3.2, $\Sigma_\theta = \sigma_t^2 I$ there):
    # $\Sigma_t = \tilde\beta_t$ or $\Sigma_t = \beta_t = 1 - \bar\alpha_t / \bar\alpha_{t-1}$
    step_variance = beta_tilde if variance == "beta_tilde" else 1.0 - alpha_bar / alpha_bar_prev

    # 4. Algorithm 2, line 4: $x_{t-1} = \tilde\mu_t + \sqrt{\Sigma_t}\, z$
    return mean + math.sqrt(step_variance) * noise


def ddim_step(x0: torch.Tensor, eps: torch.Tensor, alpha_bar: float, alpha_bar_prev: float, eta: float = 0.0,
              noise: torch.Tensor | None = None) -> torch.Tensor:
    r"""One step of DDIM (Song et al. 2021, eq. 12), from x_t (through its x0 and eps) to x_prev.

    x_prev is put together again from the predicted x0 and eps at the smaller noise level alpha_bar_prev, with a
    share eta of the noise replaced by fresh noise. eta = 0: deterministic; eta = 1: exactly DDPM's step with
    variance beta_tilde. `noise` = None leaves the fresh noise out.
    """
    # 1. the fresh noise's variance, eq. (16): $\Sigma_t(\eta) = \eta^2 \frac{1 - \bar\alpha_{t-1}}{1 - \bar\alpha_t} \left(1 - \frac{\bar\alpha_t}{\bar\alpha_{t-1}}\right)$
    step_variance = eta**2 * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar) * (1.0 - alpha_bar / alpha_bar_prev)

    # 2. eq. (12): $x_{t-1} = \sqrt{\bar\alpha_{t-1}}\, \hat x_0 + \sqrt{1 - \bar\alpha_{t-1} - \Sigma_t}\, \hat\epsilon + \sqrt{\Sigma_t}\, z$
    x_prev = math.sqrt(alpha_bar_prev) * x0 + math.sqrt(1.0 - alpha_bar_prev - step_variance) * eps
    if noise is None:
        return x_prev
    return x_prev + math.sqrt(step_variance) * noise


def euler_step(x_t: torch.Tensor, eps: torch.Tensor, sigma: float, sigma_prev: float) -> torch.Tensor:
    r"""One step of Euler's method for the probability-flow ODE, from noise level sigma to sigma_prev.

    In EDM's coordinates x = x_t / sqrt(alpha_bar) = x0 + sigma eps the ODE reads dx/dsigma = (x - x0) / sigma = eps
    (Karras et al. 2022, eq. 1 and 3), so a step is a straight line along eps. This is DDIM with eta = 0
    (Song et al. 2021, sec. 4.3), written in sigma.
    """
    # 1. from the network's x_t to EDM's x (Table 1, VP: EDM's scaling is $\sqrt{\bar\alpha} = 1/\sqrt{1+\sigma^2}$):
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


def euler_update(x_t: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, alpha_bar: float,
                 alpha_bar_prev: float) -> torch.Tensor:
    """`euler_step` in the sampling loop's terms: noise levels as alpha_bar (x0 is not needed: eps is the slope)."""
    return euler_step(x_t, eps, sigma_from_alpha_bar(alpha_bar), sigma_from_alpha_bar(alpha_bar_prev))


def heun_correction(x_t: torch.Tensor, eps: torch.Tensor, eps_next: torch.Tensor, alpha_bar: float,
                    alpha_bar_prev: float) -> torch.Tensor:
    """`heun_step` in the sampling loop's terms: the correction after an `euler_update`."""
    return heun_step(x_t, eps, eps_next, sigma_from_alpha_bar(alpha_bar), sigma_from_alpha_bar(alpha_bar_prev))
