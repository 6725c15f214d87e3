"""Rectified flow: the straight path and its velocity, training times, the bridge to VP, straightness.

References are independent of the code under test: the path's derivative by finite differences, EDM's sigma, the
posterior of a VP x_t written out, and a quarter circle's straightness integrated by hand.
"""

import json
import math

import pytest
import torch

from minidiff.diffusion.config import DiffusionConfig
from minidiff.diffusion.flow import (
    alpha_bar_of_flow_time,
    eps_on_path,
    flow_euler_step,
    flow_from_vp,
    flow_time,
    linear_path,
    sample_flow_times,
    straightness,
    velocity_from_eps,
    velocity_from_x0,
    velocity_target,
    vp_from_flow,
    x0_and_eps_from_velocity,
)
from minidiff.diffusion.forward import q_sample
from minidiff.diffusion.schedule import make_schedule, sigma_from_alpha_bar
from minidiff.diffusion.steps import ddim_step

GENERATOR = torch.Generator().manual_seed(0)
X0 = torch.randn(3, 1, 4, 4, generator=GENERATOR, dtype=torch.float64)
EPS = torch.randn(3, 1, 4, 4, generator=GENERATOR, dtype=torch.float64)


def test_the_path_runs_from_the_image_to_the_noise_and_its_velocity_is_its_derivative():
    torch.testing.assert_close(linear_path(X0, EPS, 0.0), X0)
    torch.testing.assert_close(linear_path(X0, EPS, 1.0), EPS)
    t, h = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64), 1e-6
    derivative = (linear_path(X0, EPS, t + h) - linear_path(X0, EPS, t - h)) / (2 * h)
    torch.testing.assert_close(derivative, velocity_target(X0, EPS))


@pytest.mark.parametrize("t", [0.0, 0.3, 1.0])
def test_a_velocity_gives_back_the_x0_and_eps_it_came_from_at_every_time_ends_included(t):
    x_t = linear_path(X0, EPS, t)
    x0, eps = x0_and_eps_from_velocity(x_t, velocity_target(X0, EPS), t)
    torch.testing.assert_close((x0, eps), (X0, EPS))
    if 0 < t:
        torch.testing.assert_close(velocity_from_x0(x_t, X0, t), EPS - X0)
        torch.testing.assert_close(eps_on_path(x_t, X0, t), EPS)
    if t < 1:
        torch.testing.assert_close(velocity_from_eps(x_t, EPS, t), EPS - X0)


@pytest.mark.parametrize("alpha_bar", [1.0, 0.99, 0.5, 1e-3, 0.0])
def test_a_vp_x_t_is_a_rescaled_point_of_the_straight_path(alpha_bar):
    """x_vp / (sqrt(ab) + sqrt(1 - ab)) = (1 - t) x0 + t eps at t = sqrt(1 - ab) / (sqrt(ab) + sqrt(1 - ab))."""
    x_vp = alpha_bar**0.5 * X0 + (1 - alpha_bar) ** 0.5 * EPS  # written out: Ho et al. 2020, eq. 4
    x_flow, t = flow_from_vp(x_vp, alpha_bar)
    torch.testing.assert_close(x_flow, linear_path(X0, EPS, t))
    assert alpha_bar_of_flow_time(t) == pytest.approx(alpha_bar, abs=1e-15)
    assert flow_time(alpha_bar_of_flow_time(t)) == pytest.approx(t, abs=1e-15)
    back, alpha_bar_back = vp_from_flow(x_flow, t)
    torch.testing.assert_close(back, x_vp)
    assert alpha_bar_back == pytest.approx(alpha_bar, abs=1e-15)
    if 0 < alpha_bar < 1:  # EDM's noise level is the ratio of the path's two weights
        assert t / (1 - t) == pytest.approx(sigma_from_alpha_bar(alpha_bar), rel=1e-12)


def test_the_bridge_agrees_with_q_sample_on_a_whole_schedule():
    schedule = make_schedule("cosine", 50)
    steps = torch.tensor([0, 20, 49])
    x_vp = q_sample(schedule, X0, steps, EPS)
    for i, step in enumerate(steps.tolist()):
        x_flow, t = flow_from_vp(x_vp[i], float(schedule.alpha_bar[step]))
        torch.testing.assert_close(x_flow, linear_path(X0[i], EPS[i], t))


def test_one_euler_step_in_t_is_one_ddim_step():
    """Euler along a velocity keeps x0 and eps fixed and moves t, which is what DDIM (eta = 0) does in alpha_bar:
    the same step in two coordinates (Song et al. 2021, sec. 4.3)."""
    t, t_next = 0.7, 0.45
    velocity = velocity_target(X0, EPS)
    x_next = flow_euler_step(linear_path(X0, EPS, t), velocity, t, t_next)
    ddim = ddim_step(X0, EPS, alpha_bar_of_flow_time(t), alpha_bar_of_flow_time(t_next))
    torch.testing.assert_close(vp_from_flow(x_next, t_next)[0], ddim)


def test_training_times_are_reproducible_and_distributed_as_asked():
    uniform = sample_flow_times(20000, torch.Generator().manual_seed(1), "uniform")
    assert 0 <= uniform.min() and uniform.max() <= 1 and abs(uniform.mean() - 0.5) < 0.01
    logit_normal = sample_flow_times(20000, torch.Generator().manual_seed(1), "logit_normal", mean=0.5, std=0.8)
    logits = torch.log(logit_normal / (1 - logit_normal))
    assert abs(logits.mean() - 0.5) < 0.02 and abs(logits.std() - 0.8) < 0.02
    again = sample_flow_times(20000, torch.Generator().manual_seed(1), "logit_normal", mean=0.5, std=0.8)
    assert torch.equal(logit_normal, again)
    with pytest.raises(ValueError, match="logit_normal"):
        sample_flow_times(4, None, "cosine")


def test_straightness_is_zero_for_a_line_walked_at_constant_speed_and_positive_otherwise():
    times = torch.linspace(1, 0, 11, dtype=torch.float64).tolist()
    a, b = X0[:, :, :2, :2], EPS[:, :, :2, :2]
    line = [linear_path(a, b, t) for t in times]
    torch.testing.assert_close(straightness(line, times), torch.zeros(3, dtype=torch.float64))
    slowing = [linear_path(a, b, t**2) for t in times]  # straight, but not at constant speed
    assert bool((straightness(slowing, times) > 1e-3).all())
    with pytest.raises(ValueError, match="two states"):
        straightness(line[:1], times[:1])


def test_straightness_of_a_quarter_circle_is_its_integral():
    r"""x(t) = (cos(pi t / 2), sin(pi t / 2)): |x'|^2 = pi^2 / 4, x' . (x(1) - x(0)) integrates to 2, and
    |x(1) - x(0)|^2 = 2, so S = pi^2 / 4 - 2, halved as a mean over the two coordinates."""
    times = torch.linspace(0, 1, 2001, dtype=torch.float64)
    states = [torch.stack([torch.cos(math.pi * t / 2), torch.sin(math.pi * t / 2)])[None] for t in times]  # (1, 2)
    assert float(straightness(states, times.tolist())) == pytest.approx((math.pi**2 / 4 - 2) / 2, rel=1e-5)


def test_a_flow_config_draws_logit_normal_times_by_default_and_has_no_schedule():
    config = DiffusionConfig(prediction="flow")
    assert config.time_sampling == "logit_normal" and config.noise_schedule() is None
    assert DiffusionConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert DiffusionConfig(prediction="flow", time_sampling="uniform").time_sampling == "uniform"


@pytest.mark.parametrize("bad, message", [
    ({"prediction": "flow", "time_sampling": "cosine"}, "unknown time_sampling"),
    ({"prediction": "flow", "zero_terminal_snr": True}, "pure noise at t = 1 already"),
    ({"prediction": "eps", "time_sampling": "uniform"}, "time_sampling is for prediction 'flow'"),
])
def test_mismatched_flow_settings_raise_a_clear_error(bad, message):
    with pytest.raises(ValueError, match=message):
        DiffusionConfig(**bad)
