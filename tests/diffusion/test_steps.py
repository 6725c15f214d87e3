"""One reverse step of each sampler (DDPM, DDIM, Euler in sigma, DPM-Solver++(2M)) against its paper's
identities: the posterior mean, the chosen variance, and the steps that coincide."""

import pytest
import torch

from minidiff.diffusion.dpm_solver import dpm_solver_2m_step
from minidiff.diffusion.forward import eps_from_x0, q_posterior, q_sample
from minidiff.diffusion.loop import predict_x0_and_eps
from minidiff.diffusion.schedule import make_schedule, sigma_from_alpha_bar
from minidiff.diffusion.steps import ddim_step, ddpm_step, euler_step


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_ddpm_step_given_the_true_noise_is_the_posterior_mean(name):
    schedule = make_schedule(name, 1000)
    generator = torch.Generator().manual_seed(0)
    x0 = torch.rand((3, 1, 4, 4), generator=generator, dtype=torch.float64) * 2 - 1
    eps = torch.randn((3, 1, 4, 4), generator=generator, dtype=torch.float64)
    for t in [0, 1, 10, 250, 500, 998, 999]:
        x_t = q_sample(schedule, x0, t, eps)
        x0_hat, _ = predict_x0_and_eps(lambda x, t_batch: eps, "eps", x_t, t, float(schedule.alpha_bar[t]))
        mean = ddpm_step(x_t, x0_hat, float(schedule.alpha_bar[t]), float(schedule.alpha_bar_prev[t]))
        expected_mean, _ = q_posterior(schedule, x0, x_t, t)
        torch.testing.assert_close(mean, expected_mean, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("variance, table", [("beta_tilde", "posterior_variance"), ("beta", "betas")])
def test_ddpm_step_noise_has_the_chosen_variance(variance, table):
    schedule = make_schedule("linear", 1000)
    generator = torch.Generator().manual_seed(1)
    x_t, x0, noise = (torch.randn((2, 1, 3, 3), generator=generator, dtype=torch.float64) for _ in range(3))
    for t in [1, 100, 999]:
        args = (x_t, x0, float(schedule.alpha_bar[t]), float(schedule.alpha_bar_prev[t]))
        difference = ddpm_step(*args, noise=noise, variance=variance) - ddpm_step(*args)
        torch.testing.assert_close(difference, getattr(schedule, table)[t].sqrt() * noise, rtol=1e-9, atol=1e-12)


def test_unknown_variance_is_refused():
    with pytest.raises(ValueError, match="beta_tilde"):
        ddpm_step(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), 0.5, 0.6, torch.zeros(1, 1, 2, 2), variance="large")


def consistent_pair(alpha_bar, seed=0):
    """A random x_t, x0 and the eps that makes them consistent: x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps."""
    generator = torch.Generator().manual_seed(seed)
    x_t, x0, noise = (torch.randn((2, 1, 3, 3), generator=generator, dtype=torch.float64) for _ in range(3))
    return x_t, x0, eps_from_x0(x_t, x0, alpha_bar), noise


@pytest.mark.parametrize("t, t_prev", [(999, 949), (500, 100), (10, 0), (0, -1)])
def test_ddim_with_eta_1_is_the_ddpm_step_with_beta_tilde(t, t_prev):
    """Song et al. 2021, eq. 16: eta = 1 makes DDIM's step DDPM's, in mean and in variance."""
    schedule = make_schedule("linear", 1000)
    alpha_bar, alpha_bar_prev = float(schedule.alpha_bar[t]), float(schedule.alpha_bar[t_prev]) if t_prev >= 0 else 1.0
    x_t, x0, eps, noise = consistent_pair(alpha_bar)
    ddim = ddim_step(x0, eps, alpha_bar, alpha_bar_prev, eta=1.0, noise=noise)
    ddpm = ddpm_step(x_t, x0, alpha_bar, alpha_bar_prev, noise=noise, variance="beta_tilde")
    torch.testing.assert_close(ddim, ddpm, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("t, t_prev", [(999, 949), (500, 100), (10, 0), (0, -1)])
def test_deterministic_ddim_euler_in_sigma_and_first_order_dpm_solver_are_one_step(t, t_prev):
    """Song et al. 2021, sec. 4.3, and Lu et al. 2022b: DDIM (eta = 0) is Euler's method in sigma, and
    DPM-Solver++ of first order is DDIM."""
    schedule = make_schedule("cosine", 1000)
    alpha_bar, alpha_bar_prev = float(schedule.alpha_bar[t]), float(schedule.alpha_bar[t_prev]) if t_prev >= 0 else 1.0
    x_t, x0, eps, _ = consistent_pair(alpha_bar)
    ddim = ddim_step(x0, eps, alpha_bar, alpha_bar_prev)
    euler = euler_step(x_t, eps, sigma_from_alpha_bar(alpha_bar), sigma_from_alpha_bar(alpha_bar_prev))
    torch.testing.assert_close(euler, ddim, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(dpm_solver_2m_step(x_t, x0, alpha_bar, alpha_bar_prev), ddim, rtol=1e-9, atol=1e-9)
