"""The flow samplers and the bridge between VP and rectified-flow models, checked with exact denoisers.

Two exact models of known data: for data = N(0, c^2) the flow's ODE has a closed-form solution (each x_t is the
starting noise scaled by the path's standard deviation), which measures each sampler's order of accuracy; for data =
a few points, the posterior mean of x0 written out in VP and in flow coordinates gives an exact model of each kind.
"""

from itertools import pairwise

import pytest
import torch

from minidiff.diffusion.flow import FLOW, linear_path, straightness
from minidiff.diffusion.flow_bridge import flow_denoiser_from_vp, vp_denoiser_from_flow
from minidiff.diffusion.guidance import classifier_free_guidance
from minidiff.diffusion.samplers import FLOW_SAMPLERS, flow_times, sample, sample_ddim, sample_flow_euler
from minidiff.diffusion.schedule import alpha_bar_at, make_schedule

POINTS = torch.tensor([[1.5, 1.0], [-1.0, 1.2], [0.2, -1.4]], dtype=torch.float64)  # (K, 2): the data set


def posterior_mean(x: torch.Tensor, scale: torch.Tensor, noise: torch.Tensor, points=POINTS) -> torch.Tensor:
    """E[x0 | x] for x = scale * p + noise * eps, p uniform over points: x (B, 2), scale and noise (B,)."""
    distances = ((x[:, None, :] - scale[:, None, None] * points[None]) ** 2).sum(-1)  # (B, K)
    weights = torch.softmax(-distances / (2 * noise[:, None] ** 2), dim=1)  # (B, K)
    return weights @ points  # (B, K) @ (K, 2) -> (B, 2)


def exact_velocity(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The flow model of POINTS: u = (x_t - E[x0 | x_t]) / t, with x_t = (1 - t) x0 + t eps."""
    t = t.to(torch.float64)
    return (x_t - posterior_mean(x_t, 1 - t, t)) / t[:, None]


def exact_vp_x0(schedule):
    """The VP model of POINTS on `schedule`, predicting x0, with x_t = sqrt(ab) x0 + sqrt(1 - ab) eps."""
    def denoiser(x_t, t):
        alpha_bar = torch.tensor([alpha_bar_at(schedule, float(step)) for step in t], dtype=torch.float64)
        return posterior_mean(x_t, alpha_bar.sqrt(), (1 - alpha_bar).sqrt())
    return denoiser


def gaussian_velocity(c: float):
    """The flow model of data N(0, c^2): E[x0 | x_t] = (1 - t) c^2 x_t / ((1 - t)^2 c^2 + t^2)."""
    def velocity(x_t, t):
        t = t.to(torch.float64)[:, None]
        x0 = (1 - t) * c**2 * x_t / ((1 - t) ** 2 * c**2 + t**2)
        return (x_t - x0) / t
    return velocity


def nearest_point(x: torch.Tensor) -> torch.Tensor:
    return ((x[:, None, :] - POINTS[None]) ** 2).sum(-1).argmin(1)


def run(name, denoiser, steps, n=64, seed=0, **options):
    trajectory = []
    x = sample(name, denoiser, (n, 2), None, FLOW, steps=steps, generator=torch.Generator().manual_seed(seed),
               callback=trajectory.append, **options)
    return x.to(torch.float64), trajectory


@pytest.mark.parametrize("name, order", [("flow_euler", 1), ("flow_midpoint", 2), ("flow_heun", 2)])
def test_each_sampler_converges_at_its_order_on_gaussian_data(name, order):
    """Data N(0, c^2): the ODE maps x_1 to x_0 = c x_1, so the error is measurable; halving the step divides it by
    2 for Euler and by at least 4 for the second-order methods (the midpoint method's leading error happens to
    cancel on this field: it gains 8)."""
    c = 0.5
    errors = []
    for steps in (8, 16, 32):
        x, trajectory = run(name, gaussian_velocity(c), steps, n=16)
        errors.append((x - c * trajectory[0].x_t.to(torch.float64)).abs().max().item())
    for coarse, fine in pairwise(errors):
        assert 2**order * 0.8 < coarse / fine, errors
        assert order == 2 or coarse / fine < 2.5, errors  # Euler is first order, no better


@pytest.mark.parametrize("name, nfe", [("flow_euler", 6), ("flow_midpoint", 12), ("flow_heun", 11)])
def test_steps_are_reported_as_the_loop_reports_them_with_their_network_evaluations(name, nfe):
    x, trajectory = run(name, exact_velocity, 6, n=4)
    assert trajectory[-1].nfe == nfe and trajectory[-1].t_prev == -1
    assert trajectory[0].t == 1.0 and all(a.t > b.t for a, b in pairwise(trajectory))
    for step, following in pairwise(trajectory):
        assert torch.equal(step.x_prev, following.x_t)
    torch.testing.assert_close(trajectory[-1].x_prev.double(), x)


@pytest.mark.parametrize("name", sorted(FLOW_SAMPLERS))
def test_every_sampler_of_the_exact_model_of_a_point_set_lands_on_its_points_and_is_reproducible(name):
    x, _ = run(name, exact_velocity, 40)
    torch.testing.assert_close(x, POINTS[nearest_point(x)], atol=1e-4, rtol=0)
    assert len(set(nearest_point(x).tolist())) == 3  # the noise spreads over all three points
    again, _ = run(name, exact_velocity, 40)
    assert torch.equal(x, again)


def test_a_flow_model_sampled_by_ddim_through_the_bridge_lands_where_its_own_sampler_does():
    """The same exact flow model, asked as a v model by DDIM on a zero-terminal-SNR schedule (which starts at
    t = 1, like the flow) and sampled in t by Heun, from the same noise: the same ODE, the same points."""
    schedule = make_schedule("cosine", 200, zero_terminal_snr=True)
    generator = torch.Generator().manual_seed(3)
    by_ddim = sample("ddim", vp_denoiser_from_flow(exact_velocity, schedule), (64, 2), schedule, "v", steps=200,
                     clip_x0=False, generator=generator)
    by_heun, _ = run("flow_heun", exact_velocity, 100, seed=3)
    assert torch.equal(nearest_point(by_ddim.double()), nearest_point(by_heun))
    torch.testing.assert_close(by_ddim.double(), by_heun, atol=1e-3, rtol=0)


@pytest.mark.parametrize("schedule", [make_schedule("linear", 1000), make_schedule("cosine", 1000)])
def test_a_vp_model_asked_through_the_bridge_is_the_exact_flow_model(schedule):
    """At every flow time inside the schedule's range of noise levels, the exact VP model of the points, asked
    for a velocity, is the exact flow model of the same points."""
    velocity = flow_denoiser_from_vp(exact_vp_x0(schedule), schedule, "x0")
    top = float(flow_times(1)[0]) - 0.01 if schedule.alpha_bar[-1] > 1e-6 else 0.999
    for t in [0.02, 0.3, 0.7, top]:
        times = torch.full((8,), t, dtype=torch.float32)
        x_t = linear_path(POINTS[torch.arange(8) % 3], torch.randn(8, 2, dtype=torch.float64), times.double())
        torch.testing.assert_close(velocity(x_t, times), exact_velocity(x_t, times), atol=1e-6, rtol=1e-6)


def test_a_vp_model_sampled_in_flow_time_lands_on_the_points_where_ddim_does():
    schedule = make_schedule("cosine", 1000)
    vp_model = exact_vp_x0(schedule)
    by_ddim = sample("ddim", vp_model, (64, 2), schedule, "x0", steps=200, clip_x0=False,
                     generator=torch.Generator().manual_seed(5))
    by_euler, _ = run("flow_euler", flow_denoiser_from_vp(vp_model, schedule, "x0"), 200, seed=5)
    torch.testing.assert_close(by_euler, POINTS[nearest_point(by_euler)], atol=1e-4, rtol=0)
    assert torch.equal(nearest_point(by_ddim.double()), nearest_point(by_euler))


def trajectory_states(trajectory) -> tuple[list[torch.Tensor], list[float]]:
    """The states of a flow sampler's run and their times; the loop reports the clean image as t_prev = -1."""
    states = [trajectory[0].x_t] + [step.x_prev for step in trajectory]
    times = [trajectory[0].t] + [max(step.t_prev, 0.0) for step in trajectory]
    return states, times


def test_straightness_of_sampled_trajectories_is_zero_for_one_point_and_positive_for_three():
    one_point = lambda x_t, t: (x_t - POINTS[0]) / t.to(torch.float64)[:, None]  # the exact model of one point
    _, trajectory = run("flow_euler", one_point, 20, n=8)
    assert float(straightness(*trajectory_states(trajectory)).max()) < 1e-12
    _, trajectory = run("flow_euler", exact_velocity, 20, n=8)
    assert float(straightness(*trajectory_states(trajectory)).mean()) > 1e-2


def test_guidance_steers_a_flow_sampler_like_any_other():
    """Guidance mixes velocities like any output: the conditional model of the first point alone, at w = 1, sends
    every sample to it; at w = 0 the unconditional model of all three points spreads them again."""
    first = lambda x_t, t: (x_t - POINTS[0]) / t.to(torch.float64)[:, None]  # the model conditioned on point 0

    def guided(w):
        return lambda x_t, t: classifier_free_guidance(first(x_t, t), exact_velocity(x_t, t), w)

    conditional, _ = run("flow_heun", guided(1.0), 20, n=16)
    torch.testing.assert_close(conditional, POINTS[0].expand(16, 2))
    unconditional, _ = run("flow_heun", guided(0.0), 20, n=16)
    assert len(set(nearest_point(unconditional).tolist())) == 3


def test_a_flow_model_refuses_the_vp_samplers_and_a_vp_model_the_flow_ones_each_naming_the_way_across():
    schedule = make_schedule("cosine", 100)
    with pytest.raises(ValueError, match="flow_euler"):
        sample("ddim", exact_velocity, (2, 2), schedule, FLOW, steps=5)
    with pytest.raises(ValueError, match="vp_denoiser_from_flow"):
        sample_ddim(exact_velocity, (2, 2), schedule, FLOW, steps=5)
    with pytest.raises(ValueError, match="flow_denoiser_from_vp"):
        sample_flow_euler(exact_vp_x0(schedule), (2, 2), "x0", steps=5)
    with pytest.raises(ValueError, match="steps"):
        sample_flow_euler(exact_velocity, (2, 2), steps=0)


def test_an_eps_model_through_the_bridge_needs_its_x0_clipped_from_pure_noise():
    """An eps model whose every answer is off by 0.01, sampled in flow time from t = 1 through the bridge: at the
    first step its x0 multiplies the error by 1 / sqrt(alpha_bar) (about 20,000 on the cosine schedule), which
    throws every sample the same way, and nearly all of them end on one point. With clip_x0, as the VP samplers do, they
    land near all three points (0.6 x POINTS, inside [-1, 1])."""
    schedule, points = make_schedule("cosine", 1000), 0.6 * POINTS

    def eps_model(x_t, t):  # the exact eps of the points, plus an error of 0.01
        alpha_bar = torch.tensor([alpha_bar_at(schedule, float(step)) for step in t], dtype=torch.float64)
        x0 = posterior_mean(x_t, alpha_bar.sqrt(), (1 - alpha_bar).sqrt(), points)  # (B, 2)
        return (x_t - alpha_bar.sqrt()[:, None] * x0) / (1 - alpha_bar).sqrt()[:, None] + 0.01

    def landed(x):
        return ((x[:, None, :] - points[None]) ** 2).sum(-1).min(1)  # distance to and index of the nearest point

    unclipped, _ = run("flow_euler", flow_denoiser_from_vp(eps_model, schedule, "eps"), 50)
    clipped, _ = run("flow_euler", flow_denoiser_from_vp(eps_model, schedule, "eps", clip_x0=True), 50)
    shares = [torch.bincount(landed(x).indices, minlength=3) / len(x) for x in (unclipped, clipped)]  # (3,) each
    assert shares[0].max() > 0.9, shares
    assert shares[1].min() > 0.15, shares
    assert landed(clipped).values.sqrt().median() < 0.05
