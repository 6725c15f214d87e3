"""Noise schedules, checked against the papers' formulas written out here and against diffusers' DDPMScheduler.

Each reference below is computed a second way (plain Python floats, a loop instead of a cumprod, the paper's
continuous function) so that a mistake in minidiff/diffusion/schedule.py cannot hide in the test.
"""

import math
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # diffusers is a test-only reference; nothing may go to the network
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import pytest
import torch
from diffusers import DDPMScheduler

from minidiff.diffusion.schedule import SCHEDULES, NoiseSchedule, make_schedule

# linear_betas ends at 20 / T, which is above 1 for T < 20 and exactly 1 at T = 20; the others work from T = 2.
SCHEDULE_SIZES = [(name, T) for name in SCHEDULES for T in (21, 50, 1000, 2000)]
SCHEDULE_SIZES += [("cosine", 2), ("cosine", 7), ("sigmoid", 2), ("sigmoid", 7)]


@pytest.mark.parametrize("name, T", SCHEDULE_SIZES)
def test_alpha_bar_strictly_decreasing_inside_unit_interval(name, T):
    alpha_bar = make_schedule(name, T).alpha_bar
    assert alpha_bar.shape == (T,) and alpha_bar.dtype == torch.float64
    assert bool((alpha_bar > 0).all()) and bool((alpha_bar < 1).all())
    assert bool((alpha_bar[1:] < alpha_bar[:-1]).all()), "each step must remove some signal"


@pytest.mark.parametrize("name, T", [("linear", 50), ("cosine", 1000), ("sigmoid", 13)])
def test_tables_follow_from_betas_by_hand(name, T):
    """Every table is rebuilt here from the betas with a plain Python loop (Ho et al. 2020, eq. 4 and 7)."""
    schedule = make_schedule(name, T)
    betas = schedule.betas.tolist()
    signal_left = 1.0  # alpha_bar before any step: the clean image
    for t, beta in enumerate(betas):
        alpha_bar_prev = signal_left
        signal_left *= 1.0 - beta
        assert schedule.alphas[t].item() == pytest.approx(1.0 - beta, rel=1e-14)
        assert schedule.alpha_bar[t].item() == pytest.approx(signal_left, rel=1e-12)
        assert schedule.alpha_bar_prev[t].item() == pytest.approx(alpha_bar_prev, rel=1e-12)
        snr = signal_left / (1.0 - signal_left)
        assert schedule.snr[t].item() == pytest.approx(snr, rel=1e-10)
        assert schedule.log_snr[t].item() == pytest.approx(math.log(snr), rel=1e-10, abs=1e-10)
        # $\tilde\beta_t = \frac{1 - \bar\alpha_{t-1}}{1 - \bar\alpha_t} \beta_t$ (Ho et al. 2020, eq. 7)
        assert schedule.posterior_variance[t].item() == pytest.approx(
            (1.0 - alpha_bar_prev) / (1.0 - signal_left) * beta, rel=1e-10, abs=1e-300)
    assert schedule.T == T


def test_linear_default_is_ddpm_at_1000_steps():
    """Ho et al. 2020, sec. 4: betas rise linearly from 1e-4 to 0.02 over T = 1000 steps."""
    betas = make_schedule("linear", 1000).betas
    assert betas[0].item() == pytest.approx(1e-4, rel=1e-12)
    assert betas[-1].item() == pytest.approx(0.02, rel=1e-12)
    steps = betas[1:] - betas[:-1]
    assert torch.allclose(steps, torch.full_like(steps, (0.02 - 1e-4) / 999), rtol=1e-9, atol=0)


def unclipped_prefix(alpha_bar_of_tau, T: int, max_beta: float = 0.999) -> tuple[list[float], int]:
    """alpha_bar_t = alpha_bar(tau = (t+1)/T) / alpha_bar(0) for every t before the first beta the clip would cap.

    Returns the reference values and the index of the first capped step (T if none).
    """
    reference = []
    for t in range(T):
        beta = 1.0 - alpha_bar_of_tau((t + 1) / T) / alpha_bar_of_tau(t / T)
        if beta >= max_beta:
            return reference, t
        reference.append(alpha_bar_of_tau((t + 1) / T) / alpha_bar_of_tau(0.0))
    return reference, T


def chen_sigmoid_gamma(tau: float, start: float = -3.0, end: float = 3.0, temperature: float = 1.0) -> float:
    """Chen 2023, Algorithm 1, in plain Python floats:

    gamma(tau) = (v_end - sigmoid((tau (end - start) + start) / temperature)) / (v_end - v_start).
    """
    def sigmoid(z):
        return 1.0 / (1.0 + math.exp(-z))
    v_start, v_end = sigmoid(start / temperature), sigmoid(end / temperature)
    return (v_end - sigmoid((tau * (end - start) + start) / temperature)) / (v_end - v_start)


def nichol_cosine_f(tau: float, s: float = 0.008) -> float:
    """Nichol & Dhariwal 2021, eq. 17: f(t) = cos^2(((t/T + s) / (1 + s)) * pi / 2), with tau = t / T."""
    return math.cos((tau + s) / (1 + s) * math.pi / 2) ** 2


@pytest.mark.parametrize("T", [2, 10, 100, 1000, 2000])
def test_sigmoid_matches_chen_gamma_where_the_clip_is_inactive(T):
    schedule = make_schedule("sigmoid", T)
    reference, first_clipped = unclipped_prefix(chen_sigmoid_gamma, T)
    assert first_clipped >= 1, "the comparison must cover at least one step"
    ours = schedule.alpha_bar[:first_clipped]
    assert torch.allclose(ours, torch.tensor(reference, dtype=torch.float64), rtol=1e-10, atol=1e-15)
    if first_clipped < T:
        assert schedule.betas[first_clipped].item() == pytest.approx(0.999, rel=1e-12)


@pytest.mark.parametrize("T", [2, 10, 100, 1000, 2000])
def test_cosine_matches_nichol_eq_17_where_the_clip_is_inactive(T):
    schedule = make_schedule("cosine", T)
    reference, first_clipped = unclipped_prefix(nichol_cosine_f, T)
    assert first_clipped >= 1
    ours = schedule.alpha_bar[:first_clipped]
    assert torch.allclose(ours, torch.tensor(reference, dtype=torch.float64), rtol=1e-10, atol=1e-15)
    if first_clipped < T:
        assert schedule.betas[first_clipped].item() == pytest.approx(0.999, rel=1e-12)


@pytest.mark.parametrize("name, T", [("linear", 1000), ("linear", 21), ("cosine", 1000), ("cosine", 2),
                                     ("sigmoid", 1000), ("sigmoid", 3)])
def test_zero_terminal_snr(name, T):
    """Lin et al. 2023, Algorithm 1: last SNR exactly 0, first SNR kept, new sqrt(alpha_bar) affine in the old one."""
    before = make_schedule(name, T)
    after = make_schedule(name, T, zero_terminal_snr=True)
    assert after.alpha_bar[-1].item() == 0.0
    assert after.snr[-1].item() == 0.0 and after.log_snr[-1].item() == -math.inf
    assert after.betas[-1].item() == pytest.approx(1.0, abs=1e-12)
    assert after.snr[0].item() == pytest.approx(before.snr[0].item(), rel=1e-9)
    assert bool((after.alpha_bar[1:] < after.alpha_bar[:-1]).all())
    assert bool((after.betas > 0).all()) and bool((after.betas <= 1).all())
    # The rescaling is a straight line through (old first, old first) and (old last, 0) in sqrt(alpha_bar).
    old, new = before.alpha_bar.sqrt(), after.alpha_bar.sqrt()
    expected = (old - old[-1]) / (old[0] - old[-1]) * old[0]
    assert torch.allclose(new, expected, rtol=1e-10, atol=1e-12)


def test_zero_terminal_snr_needs_two_steps():
    with pytest.raises(ValueError, match="T = 2"):
        make_schedule("cosine", 1, zero_terminal_snr=True)


@pytest.mark.parametrize("betas", [
    [0.1, 0.0, 0.2],             # a step that adds no noise
    [0.1, -0.01, 0.2],           # negative variance
    [0.1, 1.5],                  # more than all the noise there is
    [0.1, float("nan")],
    [[0.1, 0.2], [0.3, 0.4]],    # not 1-D
    [],                          # no steps
])
def test_from_betas_rejects_bad_betas(betas):
    with pytest.raises(ValueError, match="beta"):
        NoiseSchedule.from_betas(torch.tensor(betas, dtype=torch.float64))


def test_make_schedule_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown schedule 'quadratic'") as error:
        make_schedule("quadratic", 100)
    for name in SCHEDULES:
        assert name in str(error.value), "the message must list the schedules that exist"


# --- Parity with diffusers' DDPMScheduler (scheduling_ddpm.py in diffusers 0.42.1) ------------------------------
# diffusers builds "linear" as torch.linspace(1e-4, 0.02, T, dtype=float32) and "squaredcos_cap_v2" with
# betas_for_alpha_bar (Python floats, beta clipped at 0.999, then cast to float32), and takes the cumulative
# product in float32. Our tables are float64, so the comparison tolerance is set by float32 rounding:
# a 1000-term float32 product drifts by about sqrt(1000) * 2**-24 ~ 2e-6 (relative) at worst in practice,
# measured here at 2e-7 ... 8e-7 absolute. Zero-terminal-SNR runs through two such products, hence 2e-6.

DIFFUSERS_NAMES = {"linear": "linear", "cosine": "squaredcos_cap_v2"}


@pytest.mark.parametrize("name", DIFFUSERS_NAMES)
def test_alpha_bar_matches_diffusers(name):
    reference = DDPMScheduler(num_train_timesteps=1000, beta_schedule=DIFFUSERS_NAMES[name])
    ours = make_schedule(name, 1000)
    assert torch.allclose(ours.alpha_bar, reference.alphas_cumprod.double(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("T", [50, 300])
def test_cosine_alpha_bar_matches_diffusers_at_other_T(T):
    """diffusers' cosine follows T (its linear schedule does not: 1e-4 ... 0.02 for every T, so only T = 1000 above)."""
    reference = DDPMScheduler(num_train_timesteps=T, beta_schedule="squaredcos_cap_v2")
    assert torch.allclose(make_schedule("cosine", T).alpha_bar, reference.alphas_cumprod.double(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", DIFFUSERS_NAMES)
def test_zero_terminal_snr_matches_diffusers(name):
    reference = DDPMScheduler(num_train_timesteps=1000, beta_schedule=DIFFUSERS_NAMES[name],
                              rescale_betas_zero_snr=True)
    ours = make_schedule(name, 1000, zero_terminal_snr=True)
    assert reference.alphas_cumprod[-1].item() == 0.0 == ours.alpha_bar[-1].item()
    assert torch.allclose(ours.alpha_bar, reference.alphas_cumprod.double(), rtol=0, atol=2e-6)


def test_default_linear_schedule_refuses_too_few_steps():
    # 20 / T reaches 1 at T = 20: the last step would silently erase the image.
    with pytest.raises(ValueError, match="T > 20"):
        make_schedule("linear", 20)
    assert make_schedule("linear", 21).alpha_bar[-1] > 0
