r"""Every forward-process and sampler function in float16, bfloat16, float32 and float64: the result has the data's
dtype and is the float64 computation on the same inputs, rounded as that dtype rounds.

The schedule's coefficients are computed in float64 and cast only where they multiply the data. The test that
this holds: each function is linear in its tensors (x_t, x0, eps, noise, ...), so its result is a sum of terms, and
a computation that rounds each coefficient, product and sum once in the data's dtype is off by at most a few units
of that dtype's rounding (eps = torch.finfo(dtype).eps) times the size of the terms:

    |f(x, y) - f64(x, y)|  <=  C eps (|f64(x, 0)| + |f64(0, y)|)     elementwise,

where f64 is the same function on the same (rounded) inputs in float64. A coefficient computed in the data's dtype
breaks it: $\sqrt{1 - \bar\alpha_0}$ of the linear schedule is 0.01 in float64 but 0 from a float16 or bfloat16
$\bar\alpha_0 = 0.9999$ (rounded to 1), an error of 0.01 |eps| where the bound allows about 0.002 |x0| + 2e-5 |eps|.
The inputs' magnitudes spread over four decades, so that such an error shows where the other term is small.
"""

import pytest
import torch

from minidiff.diffusion.dpm_solver import dpm_solver_2m_step, dpm_solver_2m_x0, dpm_solver_sde_2m_step
from minidiff.diffusion.forward import (
    eps_from_v,
    eps_from_x0,
    q_posterior,
    q_sample,
    q_step,
    training_target,
    v_from_x0_eps,
    x0_and_eps_from_output,
    x0_from_eps,
    x0_from_v,
)
from minidiff.diffusion.guidance import classifier_free_guidance
from minidiff.diffusion.loop import denoising_loop, predict_x0_and_eps
from minidiff.diffusion.schedule import make_schedule, sigma_from_alpha_bar
from minidiff.diffusion.steps import ddim_step, ddpm_step, euler_step, euler_update, heun_correction, heun_step

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
SCHEDULE = make_schedule("linear", 1000)  # alpha_bar[0] = 0.9999: 1 - alpha_bar = 1e-4 needs float64
T = torch.tensor([0, 1, 10, 500, 998, 999])  # one sample per timestep, both ends of the schedule included
ALPHA_BAR = SCHEDULE.alpha_bar[T]  # (6,) float64
C = 3.0  # units of eps allowed per unit of the terms' size: up to six roundings of half an eps each


def data(dtype: torch.dtype, count: int, seed: int = 0, shape: tuple[int, ...] = (6, 2, 3, 3)) -> list[torch.Tensor]:
    """`count` random tensors in `dtype`, entries from 1e-3 to 10 in size, either sign."""
    generator = torch.Generator().manual_seed(seed)
    tensors = []
    for _ in range(count):
        size = 10.0 ** (torch.rand(shape, generator=generator, dtype=torch.float64) * 4 - 3)
        tensors.append((torch.randn(shape, generator=generator, dtype=torch.float64).sign() * size).to(dtype))
    return tensors


def assert_rounded_like_float64(function, inputs: list[torch.Tensor]) -> None:
    """function(*inputs) has their dtype and is within C eps of the terms' size of function(*inputs in float64)."""
    dtype = inputs[0].dtype
    result = function(*inputs)
    assert result.dtype == dtype
    exact_inputs = [x.double() for x in inputs]
    exact = function(*exact_inputs)
    size = sum(function(*[x if j == i else torch.zeros_like(x) for j, x in enumerate(exact_inputs)]).abs()
               for i in range(len(exact_inputs)))  # the terms of a linear function, one input at a time
    info = torch.finfo(dtype)
    allowed = C * info.eps * size + 8 * info.tiny * info.eps  # and a few of the smallest steps near 0 (float16)
    error = (result.double() - exact).abs()
    worst = int(torch.argmax(error - allowed))
    assert bool((error <= allowed).all()), (f"{dtype}: error {error.flatten()[worst]:.3g} where "
                                            f"{allowed.flatten()[worst]:.3g} is allowed")


# ------------------------------------------------------------------ the forward process and the conversions


@pytest.mark.parametrize("dtype", DTYPES)
def test_q_sample_and_q_step(dtype):
    assert_rounded_like_float64(lambda x0, eps: q_sample(SCHEDULE, x0, T, eps), data(dtype, 2))
    assert_rounded_like_float64(lambda x_prev, eps: q_step(SCHEDULE, x_prev, T, eps), data(dtype, 2))
    for t in (0, 999):  # an int t too
        assert_rounded_like_float64(lambda x0, eps, t=t: q_sample(SCHEDULE, x0, t, eps), data(dtype, 2, seed=t))


@pytest.mark.parametrize("dtype", DTYPES)
def test_q_posterior(dtype):
    assert_rounded_like_float64(lambda x0, x_t: q_posterior(SCHEDULE, x0, x_t, T)[0], data(dtype, 2))
    variance = q_posterior(SCHEDULE, *data(dtype, 2), T)[1]  # a coefficient alone: the table, rounded once
    assert variance.dtype == dtype
    exact = SCHEDULE.posterior_variance[T].reshape(-1, 1, 1, 1)
    assert bool(((variance.double() - exact).abs() <= torch.finfo(dtype).eps * exact).all())


CONVERSIONS = {"x0_from_eps": x0_from_eps, "eps_from_x0": eps_from_x0, "v_from_x0_eps": v_from_x0_eps,
               "x0_from_v": x0_from_v, "eps_from_v": eps_from_v,
               "training_target v": lambda x0, eps, alpha_bar: training_target("v", x0, eps, alpha_bar)}
for _prediction in ("eps", "x0", "v"):
    for _part in (0, 1):  # x0, then eps
        CONVERSIONS[f"x0_and_eps_from_output {_prediction} [{_part}]"] = (
            lambda output, x_t, alpha_bar, p=_prediction, k=_part: x0_and_eps_from_output(p, output, x_t, alpha_bar)[k])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(CONVERSIONS))
def test_conversions_with_alpha_bar_per_sample_or_one_float(name, dtype):
    convert = CONVERSIONS[name]
    assert_rounded_like_float64(lambda a, b: convert(a, b, ALPHA_BAR), data(dtype, 2))  # (B,) float64
    for alpha_bar in (float(ALPHA_BAR[0]), float(ALPHA_BAR[-1])):  # a Python float, at both ends
        assert_rounded_like_float64(lambda a, b, alpha_bar=alpha_bar: convert(a, b, alpha_bar), data(dtype, 2, seed=1))


# ------------------------------------------------------------------ the sampler steps

# (t, t_prev) pairs: the first step from pure noise, a big respaced step, the last step into the clean image
PAIRS = [(999, 949), (500, 100), (1, 0), (0, -1)]


def levels(t: int, t_prev: int) -> tuple[float, float]:
    """alpha_bar at t and t_prev as Python floats, as the sampling loop passes them (1 for the clean image)."""
    return float(SCHEDULE.alpha_bar[t]), float(SCHEDULE.alpha_bar[t_prev]) if t_prev >= 0 else 1.0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("t, t_prev", PAIRS)
def test_ddpm_and_ddim_steps(t, t_prev, dtype):
    a, a_prev = levels(t, t_prev)
    for variance in ("beta_tilde", "beta"):
        assert_rounded_like_float64(lambda x_t, x0, z, v=variance: ddpm_step(x_t, x0, a, a_prev, z, v), data(dtype, 3))
    assert_rounded_like_float64(lambda x0, eps, z: ddim_step(x0, eps, a, a_prev, 0.5, z), data(dtype, 3))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("t, t_prev", PAIRS)
def test_euler_and_heun_steps(t, t_prev, dtype):
    a, a_prev = levels(t, t_prev)
    sigma, sigma_prev = sigma_from_alpha_bar(a), sigma_from_alpha_bar(a_prev)
    assert_rounded_like_float64(lambda x_t, eps: euler_step(x_t, eps, sigma, sigma_prev), data(dtype, 2))
    assert_rounded_like_float64(lambda x_t, x0, eps: euler_update(x_t, x0, eps, a, a_prev), data(dtype, 3))
    assert_rounded_like_float64(lambda x_t, e, e2: heun_step(x_t, e, e2, sigma, sigma_prev), data(dtype, 3))
    assert_rounded_like_float64(lambda x_t, e, e2: heun_correction(x_t, e, e2, a, a_prev), data(dtype, 3))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("t, t_prev", PAIRS)
def test_dpm_solver_steps(t, t_prev, dtype):
    a, a_prev = levels(t, t_prev)
    a_earlier = float(SCHEDULE.alpha_bar[t + 50]) if 0 <= t_prev and t < 949 else None  # never into x0 (h = inf)
    if a_earlier is not None:  # second order: x0 extrapolated from the step before's
        assert_rounded_like_float64(lambda x0, x0_e: dpm_solver_2m_x0(x0, a, a_prev, x0_e, a_earlier),
                                    data(dtype, 2))
        assert_rounded_like_float64(lambda x_t, x0, x0_e: dpm_solver_2m_step(x_t, x0, a, a_prev, x0_e, a_earlier),
                                    data(dtype, 3))
        assert_rounded_like_float64(
            lambda x_t, x0, z, x0_e: dpm_solver_sde_2m_step(x_t, x0, a, a_prev, z, x0_e, a_earlier), data(dtype, 4))
    assert_rounded_like_float64(lambda x_t, x0: dpm_solver_2m_step(x_t, x0, a, a_prev), data(dtype, 2))
    assert_rounded_like_float64(lambda x_t, x0, z: dpm_solver_sde_2m_step(x_t, x0, a, a_prev, z), data(dtype, 3))


@pytest.mark.parametrize("dtype", DTYPES)
def test_classifier_free_guidance(dtype):
    assert_rounded_like_float64(lambda cond, uncond: classifier_free_guidance(cond, uncond, 3.0), data(dtype, 2))
    cond, uncond = data(dtype, 2)  # with rescale the weights are data too (a ratio of standard deviations)
    rescaled = classifier_free_guidance(cond, uncond, 3.0, rescale=0.7)
    exact = classifier_free_guidance(cond.double(), uncond.double(), 3.0, rescale=0.7)
    assert rescaled.dtype == dtype
    size = (cond.double().abs() + 3.0 * (cond.double() - uncond.double()).abs()) * 2  # the terms, the ratio below 2
    assert bool(((rescaled.double() - exact).abs() <= 4 * C * torch.finfo(dtype).eps * size).all())


# ------------------------------------------------------------------ the sampling loop


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_predict_x0_and_eps(prediction, dtype):
    t = 0  # alpha_bar = 0.9999, where a coefficient rounded to float16 or bfloat16 loses everything
    for part in (0, 1):
        assert_rounded_like_float64(
            lambda x_t, output, k=part: predict_x0_and_eps(lambda x, t_batch: output, prediction, x_t, t,
                                                           float(SCHEDULE.alpha_bar[t]))[k], data(dtype, 2))


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_sampling_loop_keeps_the_dtype_and_each_step_is_float64_rounded(dtype):
    """Every step the loop reports is the float64 step from the same (rounded) x_t and prediction."""
    generator = torch.Generator().manual_seed(3)
    x_T = torch.randn((2, 1, 4, 4), generator=generator).to(dtype)
    steps = []

    def update(x_t, x0, eps, alpha_bar, alpha_bar_prev):
        return ddim_step(x0, eps, alpha_bar, alpha_bar_prev)

    result = denoising_loop(lambda x_t, t: 0.5 * x_t, x_T, SCHEDULE, "eps", [999, 500, 10, 0], update,
                            callback=steps.append)
    assert result.dtype == dtype and len(steps) == 4
    for step in steps:
        assert step.x_t.dtype == step.x0.dtype == step.eps.dtype == step.x_prev.dtype == dtype
        a, a_prev = levels(int(step.t), int(step.t_prev))
        assert_rounded_like_float64(lambda x0, eps, a=a, a_prev=a_prev: ddim_step(x0, eps, a, a_prev),
                                    [step.x0, step.eps])
        torch.testing.assert_close(step.x_prev, ddim_step(step.x0, step.eps, a, a_prev), rtol=0, atol=0)
