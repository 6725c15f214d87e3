"""The forward process q and the eps / x0 / v conversions, each checked against an independent reference:
Monte Carlo of the step-by-step chain, Bayes' rule written out by hand, a brute-force grid, algebraic identities
that hold for any schedule (hypothesis), and diffusers' DDPMScheduler.add_noise.
"""

import math
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # diffusers is a test-only reference; nothing may go to the network
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import pytest
import torch
from diffusers import DDPMScheduler
from hypothesis import given, settings
from hypothesis import strategies as st

from minidiff.diffusion.forward import (
    PREDICTIONS,
    eps_from_v,
    eps_from_x0,
    gather,
    q_posterior,
    q_sample,
    q_step,
    training_target,
    v_from_x0_eps,
    x0_and_eps_from_output,
    x0_from_eps,
    x0_from_v,
)
from minidiff.diffusion.schedule import SCHEDULES, make_schedule

PROPERTY_SETTINGS = settings(max_examples=40, deadline=None)


# --- q(x_t | x0) in one shot equals t + 1 single steps (t is 0-based: t = 0 is one step) -----------------------

@pytest.mark.parametrize("name, T, t, zero_terminal_snr", [
    ("linear", 1000, 9, False),
    ("linear", 1000, 299, False),
    ("cosine", 1000, 999, False),
    ("cosine", 100, 49, True),
    ("cosine", 100, 99, True),     # the last step of a zero-terminal-SNR schedule: pure noise
    ("sigmoid", 200, 120, False),
])
def test_closed_form_matches_iterated_steps_in_mean_and_variance(name, T, t, zero_terminal_snr):
    schedule = make_schedule(name, T, zero_terminal_snr=zero_terminal_snr)
    generator = torch.Generator().manual_seed(1234 + t)
    n = 10_000  # draws per pixel: 5 standard errors are then about 2% of a mean of 1 and 6% of a variance
    x0 = torch.tensor([-1.0, 0.3, 1.0], dtype=torch.float64).expand(n, 3)  # (n, 3): three pixels, n draws each

    x_t_iterated = x0.clone()
    for step in range(t + 1):
        x_t_iterated = q_step(schedule, x_t_iterated, step, torch.randn(n, 3, generator=generator, dtype=torch.float64))
    x_t_direct = q_sample(schedule, x0, t, torch.randn(n, 3, generator=generator, dtype=torch.float64))

    mean_a, mean_b = x_t_iterated.mean(0), x_t_direct.mean(0)  # (3,)
    var_a, var_b = x_t_iterated.var(0), x_t_direct.var(0)  # (3,)
    # Standard error of a mean: sqrt(var / n); of a Gaussian sample variance: var * sqrt(2 / (n - 1)).
    se_mean = torch.sqrt(var_a / n + var_b / n)
    se_var = torch.sqrt(2 / (n - 1) * (var_a**2 + var_b**2))
    assert bool(((mean_a - mean_b).abs() < 5 * se_mean).all()), (mean_a, mean_b)
    assert bool(((var_a - var_b).abs() < 5 * se_var).all()), (var_a, var_b)

    # Both also match q(x_t | x0) = N(sqrt(alpha_bar) x0, 1 - alpha_bar), with alpha_bar the product of (1 - beta).
    alpha_bar = math.prod(1.0 - b for b in schedule.betas[: t + 1].tolist())
    expected_mean = math.sqrt(alpha_bar) * x0[0]
    assert bool(((mean_a - expected_mean).abs() < 5 * torch.sqrt(var_a / n)).all())
    assert bool(((var_a - (1 - alpha_bar)).abs() < 5 * (1 - alpha_bar) * math.sqrt(2 / (n - 1))).all())


@pytest.mark.parametrize("name, T, t", [("linear", 1000, 0), ("linear", 1000, 500), ("cosine", 1000, 999),
                                        ("sigmoid", 30, 17)])
def test_iterated_steps_have_the_closed_form_moments_exactly(name, T, t):
    """The chain is linear in x0 and in each step's noise, so its moments can be read off without sampling.

    Mean: run the t + 1 steps with zero noise. Variance: sample j of a batch gets noise 1 at step j and 0
    elsewhere; x_t[j] is then the weight of that step's noise in x_t, and the variance is the sum of squares.
    """
    schedule = make_schedule(name, T)
    x0 = torch.tensor([[0.8]], dtype=torch.float64)  # (1, 1)
    noise_free = x0.clone()
    weights = torch.zeros(t + 1, 1, dtype=torch.float64)  # (t + 1, 1): one sample per noisy step
    for step in range(t + 1):
        noise_free = q_step(schedule, noise_free, step, torch.zeros_like(noise_free))
        weights = q_step(schedule, weights, step, (torch.arange(t + 1) == step).double().unsqueeze(1))
    alpha_bar = math.prod(1.0 - b for b in schedule.betas[: t + 1].tolist())
    assert noise_free.item() == pytest.approx(math.sqrt(alpha_bar) * 0.8, rel=1e-10)
    assert (weights**2).sum().item() == pytest.approx(1.0 - alpha_bar, rel=1e-10)
    zero_noise = torch.zeros_like(x0)
    assert q_sample(schedule, x0, t, zero_noise).item() == pytest.approx(noise_free.item(), rel=1e-10)
    noise_weight = q_sample(schedule, zero_noise, t, torch.ones_like(x0)).item()
    assert noise_weight**2 == pytest.approx(1.0 - alpha_bar, rel=1e-10)


def test_first_step_in_one_shot_is_exactly_one_single_step():
    schedule = make_schedule("cosine", 50)
    x0, eps = torch.randn(2, 3, 4, 4, dtype=torch.float64), torch.randn(2, 3, 4, 4, dtype=torch.float64)
    assert torch.allclose(q_sample(schedule, x0, 0, eps), q_step(schedule, x0, 0, eps), rtol=0, atol=1e-15)


# --- the posterior q(x_{t-1} | x_t, x0) ----------------------------------------------------------------------------

def bayes_posterior(betas: list[float], t: int, x0: float, x_t: float) -> tuple[float, float]:
    """Posterior of the previous state by Bayes' rule, as a product of two Gaussians in x_prev.

    Likelihood q(x_t | x_prev) = N(x_t; sqrt(alpha_t) x_prev, beta_t) is, as a function of x_prev,
    proportional to N(x_prev; x_t / sqrt(alpha_t), beta_t / alpha_t).
    Prior q(x_prev | x0) = N(sqrt(alpha_bar_prev) x0, 1 - alpha_bar_prev).
    Precisions add; the mean is the precision-weighted average of the two means.
    """
    beta = betas[t]
    alpha = 1.0 - beta
    alpha_bar_prev = math.prod(1.0 - b for b in betas[:t])  # empty product = 1 at t = 0
    likelihood_mean, likelihood_var = x_t / math.sqrt(alpha), beta / alpha
    prior_mean, prior_var = math.sqrt(alpha_bar_prev) * x0, 1.0 - alpha_bar_prev
    precision = 1.0 / likelihood_var + 1.0 / prior_var
    mean = (likelihood_mean / likelihood_var + prior_mean / prior_var) / precision
    return mean, 1.0 / precision


@pytest.mark.parametrize("name, T, t", [
    ("linear", 1000, 1), ("linear", 1000, 500), ("linear", 1000, 999),
    ("cosine", 1000, 3), ("cosine", 1000, 998), ("cosine", 40, 20), ("sigmoid", 100, 50),
])
def test_posterior_is_the_product_of_gaussians(name, T, t):
    schedule = make_schedule(name, T)
    betas = schedule.betas.tolist()
    x0 = torch.tensor([-0.8, 0.1, 0.9], dtype=torch.float64)
    x_t = torch.tensor([1.5, -0.4, 0.2], dtype=torch.float64)
    mean, variance = q_posterior(schedule, x0, x_t, t)
    for i in range(3):
        expected_mean, expected_var = bayes_posterior(betas, t, x0[i].item(), x_t[i].item())
        assert mean[i].item() == pytest.approx(expected_mean, rel=1e-9, abs=1e-12)
        assert float(variance) == pytest.approx(expected_var, rel=1e-9)


def test_posterior_at_first_step_is_the_clean_image():
    """At t = 0 the prior q(x_prev | x0) is a point mass at x0: the posterior mean is x0 and its variance 0."""
    schedule = make_schedule("linear", 100)
    x0, x_t = torch.randn(4, 3, 5, 5, dtype=torch.float64), torch.randn(4, 3, 5, 5, dtype=torch.float64)
    mean, variance = q_posterior(schedule, x0, x_t, 0)
    assert torch.allclose(mean, x0, rtol=0, atol=1e-12)
    assert float(variance) == 0.0


def test_posterior_at_zero_terminal_snr_is_the_prior():
    """With alpha_bar = 0 at the last step, x_t holds no trace of x_prev: the posterior is the prior q(x_prev | x0)."""
    schedule = make_schedule("cosine", 30, zero_terminal_snr=True)
    x0, x_t = torch.randn(4, 3, 5, 5, dtype=torch.float64), torch.randn(4, 3, 5, 5, dtype=torch.float64)
    mean, variance = q_posterior(schedule, x0, x_t, 29)
    alpha_bar_prev = math.prod(1.0 - b for b in schedule.betas[:29].tolist())
    assert torch.allclose(mean, math.sqrt(alpha_bar_prev) * x0, rtol=1e-10, atol=1e-12)
    assert float(variance) == pytest.approx(1.0 - alpha_bar_prev, rel=1e-10)


@pytest.mark.parametrize("name, t", [("linear", 400), ("cosine", 10), ("cosine", 900)])
def test_posterior_matches_brute_force_on_a_grid(name, t):
    """Multiply likelihood and prior pointwise on a fine 1-D grid of x_prev, normalise, and take moments."""
    schedule = make_schedule(name, 1000)
    betas = schedule.betas.tolist()
    x0, x_t = 0.7, -0.3
    beta, alpha_bar_prev = betas[t], math.prod(1.0 - b for b in betas[:t])
    x_prev = torch.linspace(-8.0, 8.0, 400_001, dtype=torch.float64)
    log_likelihood = -((x_t - math.sqrt(1 - beta) * x_prev) ** 2) / (2 * beta)
    log_prior = -((x_prev - math.sqrt(alpha_bar_prev) * x0) ** 2) / (2 * (1 - alpha_bar_prev))
    log_joint = log_likelihood + log_prior
    weights = torch.exp(log_joint - log_joint.max())
    weights = weights / weights.sum()
    grid_mean = (weights * x_prev).sum().item()
    grid_var = (weights * (x_prev - grid_mean) ** 2).sum().item()

    mean, variance = q_posterior(schedule, torch.tensor([x0], dtype=torch.float64),
                                 torch.tensor([x_t], dtype=torch.float64), t)
    assert mean.item() == pytest.approx(grid_mean, rel=1e-6, abs=1e-9)
    assert float(variance) == pytest.approx(grid_var, rel=1e-6)


# --- hypothesis: random schedules, T, shapes -------------------------------------------------------------------

@st.composite
def schedules(draw):
    name = draw(st.sampled_from(SCHEDULES))
    # linear_betas reaches 20 / T, a valid beta only from T = 21 on; cosine and sigmoid work from T = 2.
    T = draw(st.integers(min_value=21 if name == "linear" else 2, max_value=2000))
    return make_schedule(name, T, zero_terminal_snr=draw(st.booleans()))


image_shapes = st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 8), st.integers(1, 8))  # (B, C, H, W)
seeds = st.integers(0, 2**31 - 1)


def random_batch(shape, seed, schedule, last_step_allowed=True):
    """x0 in [-1, 1], eps ~ N(0, I) and one t per sample, all float64 and reproducible from the seed."""
    generator = torch.Generator().manual_seed(seed)
    x0 = torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1
    eps = torch.randn(shape, generator=generator, dtype=torch.float64)
    high = schedule.T if last_step_allowed else schedule.T - 1
    t = torch.randint(0, high, (shape[0],), generator=generator)
    return x0, eps, t


@PROPERTY_SETTINGS
@given(schedule=schedules(), shape=image_shapes, seed=seeds)
def test_conversions_invert_each_other(schedule, shape, seed):
    # Recovering x0 from eps divides by sqrt(alpha_bar), so keep away from a zero-terminal-SNR last step.
    x0, eps, t = random_batch(shape, seed, schedule, last_step_allowed=bool(schedule.alpha_bar[-1] > 0))
    alpha_bar = schedule.alpha_bar[t]  # (B,)
    x_t = q_sample(schedule, x0, t, eps)
    v = v_from_x0_eps(x0, eps, alpha_bar)

    def close(a, b):
        return torch.allclose(a, b, rtol=1e-8, atol=1e-8)

    assert close(x0_from_eps(x_t, eps, alpha_bar), x0)
    assert close(eps_from_x0(x_t, x0, alpha_bar), eps)
    assert close(x0_from_v(x_t, v, alpha_bar), x0)
    assert close(eps_from_v(x_t, v, alpha_bar), eps)
    # (x_t, v) is (x0, eps) turned by the angle phi with cos(phi) = sqrt(alpha_bar): lengths are kept.
    assert close(x_t**2 + v**2, x0**2 + eps**2)
    for prediction in PREDICTIONS:
        output = training_target(prediction, x0, eps, alpha_bar)
        x0_back, eps_back = x0_and_eps_from_output(prediction, output, x_t, alpha_bar)
        assert close(x0_back, x0) and close(eps_back, eps), prediction


def test_conversions_at_zero_terminal_snr():
    """alpha_bar = 0: x_t is the noise itself and v = -x0, so v (unlike eps) still says what x0 was."""
    schedule = make_schedule("sigmoid", 20, zero_terminal_snr=True)
    x0, eps = torch.rand(3, 1, 4, 4, dtype=torch.float64), torch.randn(3, 1, 4, 4, dtype=torch.float64)
    x_t = q_sample(schedule, x0, 19, eps)
    alpha_bar = schedule.alpha_bar[19]
    assert torch.equal(x_t, eps)
    v = v_from_x0_eps(x0, eps, alpha_bar)
    assert torch.equal(v, -x0)
    assert torch.equal(x0_from_v(x_t, v, alpha_bar), x0) and torch.equal(eps_from_v(x_t, v, alpha_bar), eps)


def test_unknown_prediction_target_is_rejected():
    x = torch.zeros(1, 1, 2, 2)
    with pytest.raises(ValueError, match="unknown prediction target 'score'"):
        training_target("score", x, x, 0.5)
    with pytest.raises(ValueError, match="unknown prediction target 'score'"):
        x0_and_eps_from_output("score", x, x, 0.5)


@PROPERTY_SETTINGS
@given(schedule=schedules(), shape=image_shapes, seed=seeds, data=st.data())
def test_q_sample_t_as_int_or_tensor_agree_and_keep_the_shape(schedule, shape, seed, data):
    x0, eps, t_per_sample = random_batch(shape, seed, schedule)
    t = data.draw(st.integers(0, schedule.T - 1))
    from_int = q_sample(schedule, x0, t, eps)
    assert from_int.shape == x0.shape
    assert torch.equal(from_int, q_sample(schedule, x0, torch.full((shape[0],), t), eps))
    assert torch.equal(from_int, q_sample(schedule, x0, torch.tensor(t), eps))
    # A different t per sample gives each sample what it would get alone.
    mixed = q_sample(schedule, x0, t_per_sample, eps)
    assert mixed.shape == x0.shape
    for i in range(shape[0]):
        alone = q_sample(schedule, x0[i : i + 1], int(t_per_sample[i]), eps[i : i + 1])
        assert torch.equal(mixed[i : i + 1], alone)


@PROPERTY_SETTINGS
@given(schedule=schedules(), shape=image_shapes, seed=seeds)
def test_posterior_variance_lies_between_zero_and_beta(schedule, shape, seed):
    assert bool((schedule.posterior_variance >= 0).all())
    assert bool((schedule.posterior_variance <= schedule.betas * (1 + 1e-12)).all())
    x0, eps, t = random_batch(shape, seed, schedule)
    mean, variance = q_posterior(schedule, x0, q_sample(schedule, x0, t, eps), t)
    assert mean.shape == x0.shape
    assert torch.broadcast_shapes(variance.shape, x0.shape) == x0.shape
    beta = schedule.betas[t].reshape(-1, 1, 1, 1)  # (B,) -> (B, 1, 1, 1)
    assert bool((variance >= 0).all()) and bool((variance <= beta * (1 + 1e-12)).all())


@PROPERTY_SETTINGS
@given(schedule=schedules(), shape=image_shapes, seed=seeds)
def test_posterior_agrees_with_the_marginals(schedule, shape, seed):
    """Averaging the posterior over x_t ~ q(x_t | x0) must give back the marginal
    q(x_{t-1} | x0) = N(sqrt(alpha_bar_prev) x0, 1 - alpha_bar_prev).

    Mean (tower rule): coef_x0 + coef_xt * sqrt(alpha_bar_t) = sqrt(alpha_bar_prev).
    So on the noise-free path, x0 = c and x_t = sqrt(alpha_bar_t) c, the posterior mean is sqrt(alpha_bar_prev) c
    (and c itself only at t = 0, where alpha_bar_prev = 1).
    Variance (law of total variance): beta_tilde + coef_xt^2 (1 - alpha_bar_t) = 1 - alpha_bar_prev.
    """
    betas = schedule.betas.tolist()
    alpha_bar_prev = torch.tensor([math.prod(1.0 - b for b in betas[:t]) for t in range(len(betas))],
                                  dtype=torch.float64)
    alpha_bar = alpha_bar_prev * (1 - schedule.betas)
    coef_x0, coef_xt = schedule.posterior_coef_x0, schedule.posterior_coef_xt
    assert torch.allclose(coef_x0 + coef_xt * alpha_bar.sqrt(), alpha_bar_prev.sqrt(), rtol=1e-9, atol=1e-12)
    assert torch.allclose(schedule.posterior_variance + coef_xt**2 * (1 - alpha_bar), 1 - alpha_bar_prev,
                          rtol=1e-9, atol=1e-12)

    c, _, t = random_batch(shape, seed, schedule)
    noise_free_x_t = gather(alpha_bar, t, c).sqrt() * c
    mean, _ = q_posterior(schedule, c, noise_free_x_t, t)
    assert torch.allclose(mean, gather(alpha_bar_prev, t, c).sqrt() * c, rtol=1e-9, atol=1e-12)


def test_gather_reports_bad_t():
    schedule = make_schedule("cosine", 10)
    x = torch.zeros(3, 1, 2, 2)
    with pytest.raises(ValueError, match="t must be a whole number in 0 ... 9"):
        q_sample(schedule, x, 10, x)
    with pytest.raises(ValueError, match="batch of 3"):
        q_sample(schedule, x, torch.tensor([1, 2]), x)


# --- parity with diffusers' DDPMScheduler.add_noise ---------------------------------------------------------------

@pytest.mark.parametrize("name, diffusers_name", [("linear", "linear"), ("cosine", "squaredcos_cap_v2")])
@pytest.mark.parametrize("zero_terminal_snr", [False, True])
def test_q_sample_matches_diffusers_add_noise(name, diffusers_name, zero_terminal_snr):
    """Same alpha_bar table, same inputs -> same x_t, for every t at once.

    diffusers keeps alphas_cumprod in float32; near t = 0, 1 - alpha_bar ~ 1e-4 then keeps only ~3 digits and
    sqrt(1 - alpha_bar) differs from ours by up to ~3e-5. The tables themselves are compared in test_schedule.py;
    here diffusers is handed our float64 table so that the comparison isolates the formula of add_noise.
    """
    reference = DDPMScheduler(num_train_timesteps=1000, beta_schedule=diffusers_name,
                              rescale_betas_zero_snr=zero_terminal_snr)
    schedule = make_schedule(name, 1000, zero_terminal_snr=zero_terminal_snr)
    assert torch.allclose(reference.alphas_cumprod.double(), schedule.alpha_bar, rtol=0, atol=2e-6)
    reference.alphas_cumprod = schedule.alpha_bar.clone()
    generator = torch.Generator().manual_seed(7)
    x0 = torch.rand(1000, 3, 4, 4, generator=generator, dtype=torch.float64) * 2 - 1
    eps = torch.randn(1000, 3, 4, 4, generator=generator, dtype=torch.float64)
    t = torch.randperm(1000, generator=generator)
    assert torch.allclose(q_sample(schedule, x0, t, eps), reference.add_noise(x0, eps, t), rtol=0, atol=1e-6)
    # And in float32, the dtype models train in. Our coefficients are float64 until they meet the data, so x_t is the
    # float64 result rounded once; diffusers computes sqrt(1 - alpha_bar) from its float32 table, off by up to ~3e-5.
    reference.alphas_cumprod = schedule.alpha_bar.float()
    ours32, theirs32 = q_sample(schedule, x0.float(), t, eps.float()), reference.add_noise(x0.float(), eps.float(), t)
    assert ours32.dtype == torch.float32
    assert torch.allclose(ours32.double(), q_sample(schedule, x0.float().double(), t, eps.float().double()),
                          rtol=0, atol=1e-6)
    assert torch.allclose(ours32, theirs32, rtol=0, atol=1e-4)


def test_tensor_t_outside_the_schedule_is_rejected():
    schedule = make_schedule("cosine", 10)
    x0 = torch.zeros(2, 1, 2, 2)
    for bad in ([-1, 0], [0, 10]):
        with pytest.raises(ValueError, match="0 ... 9"):
            q_sample(schedule, x0, torch.tensor(bad), torch.zeros_like(x0))
