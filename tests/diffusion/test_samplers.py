"""Samplers: each one's trajectory against diffusers' schedulers, the loop against exact denoisers, network
evaluations, seeds, zero terminal SNR. (One step of each: test_steps.py; the timesteps: test_timesteps.py; the
sample command: tests/cli/test_cli_sample.py.)"""

import numpy as np
import pytest
import torch
from support.tiny import tiny_unet

from minidiff.diffusion.forward import PREDICTIONS, x0_and_eps_from_output
from minidiff.diffusion.loop import DenoisingStep, model_denoiser, predict_x0_and_eps
from minidiff.diffusion.samplers import SAMPLERS, sample_ddim, sample_ddpm, sample_dpm_solver, sample_dpm_solver_sde
from minidiff.diffusion.schedule import NoiseSchedule, alpha_bar_at, make_schedule
from minidiff.diffusion.timesteps import SPACINGS, sampling_timesteps


def one_point_denoiser(schedule, x_star):
    """The exact eps-denoiser when the data is one image x*: eps = (x_t - sqrt(alpha_bar) x*) / sqrt(1 - alpha_bar).

    t may be fractional (Karras sigmas): alpha_bar is then read between the table's entries, as the samplers do.
    """
    def denoiser(x_t, t):
        alpha_bar = torch.tensor([alpha_bar_at(schedule, step) for step in t.tolist()], dtype=x_t.dtype)
        alpha_bar = alpha_bar.reshape(-1, 1, 1, 1)  # (B,) -> (B, 1, 1, 1)
        return (x_t - alpha_bar.sqrt() * x_star) / (1 - alpha_bar).sqrt()
    return denoiser



def test_ddim_refuses_eta_outside_0_to_1():
    schedule = make_schedule("linear", 50)
    for eta in [-0.1, 1.5]:
        with pytest.raises(ValueError, match=r"eta must be a number in \[0.0, 1.0\]"):
            sample_ddim(lambda x, t: x, (1, 1, 2, 2), schedule, eta=eta, generator=torch.Generator().manual_seed(0))



# ------------------------------------------------------------------ against diffusers


@pytest.mark.parametrize("prediction, diffusers_prediction",
                         [("eps", "epsilon"), ("x0", "sample"), ("v", "v_prediction")])
@pytest.mark.parametrize("variance, variance_type", [("beta_tilde", "fixed_small"), ("beta", "fixed_large")])
@pytest.mark.parametrize("steps", [1000, 25])
def test_sampling_matches_diffusers_ddpm_scheduler(prediction, diffusers_prediction, variance, variance_type, steps):
    from diffusers import DDPMScheduler

    schedule = make_schedule("linear", 1000)
    scheduler = DDPMScheduler(num_train_timesteps=1000, trained_betas=schedule.betas.numpy(),
                              variance_type=variance_type, prediction_type=diffusers_prediction,
                              clip_sample=True, clip_sample_range=1.0)
    scheduler.set_timesteps(timesteps=sampling_timesteps(1000, steps))

    def denoiser(x_t, t):  # any fixed function of (x_t, t) will do: both samplers read the same outputs
        return 0.6 * x_t + 0.3 * torch.sin(t.float() / 100).reshape(-1, 1, 1, 1)

    shape = (2, 1, 4, 4)
    ours = sample_ddpm(denoiser, shape, schedule, prediction, steps=steps, variance=variance, clip_x0=True,
                       generator=torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(shape, generator=generator)
    for t in scheduler.timesteps:
        output = denoiser(x, torch.full((shape[0],), int(t)))
        x = scheduler.step(output, t, x, generator=generator).prev_sample
    torch.testing.assert_close(ours, x, rtol=1e-4, atol=1e-4)



DIFFUSERS_PREDICTION = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}
SHAPE = (2, 1, 4, 4)


def diffusers_schedule(name, T=1000):
    """Betas as diffusers holds them (float32), and our schedule of the alpha_bar it computes from them.

    diffusers multiplies alpha_bar out in float32; building ours from its table makes both sides read the same
    numbers, so that the samplers are what is compared (from our own float64 table the Karras timesteps would move
    by up to 0.006). "linear" is DDPM's (sigma up to 157), "scaled_linear" Stable Diffusion's (sigma up to 14.6).
    """
    if name == "linear":
        betas = torch.linspace(1e-4, 0.02, T)
    else:
        betas = torch.linspace(0.00085**0.5, 0.012**0.5, T) ** 2
    alpha_bar = torch.cumprod(1 - betas, dim=0).double()
    alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
    return betas.numpy(), NoiseSchedule.from_betas(1 - alpha_bar / alpha_bar_prev)


def fake_model(x_t, t):
    """A fixed, smooth, deterministic stand-in for a network: any function of (x_t, t) will do, since both sides
    read the same outputs."""
    t = t.double().reshape(-1, 1, 1, 1)  # (B,) -> (B, 1, 1, 1)
    return (0.9 * torch.tanh(2 * x_t) * torch.cos(t / 1000) + 0.5 * torch.sin(t / 100 + x_t)).to(x_t.dtype)


def our_trajectory(sample, schedule, prediction, **options):
    """Every step our sampler reports, from x_T = randn(SHAPE) of seed 3.

    Compared to 1e-5 (absolute, and relative: with the eps stand-in, states grow to about 30 on the linear
    schedule): float32 rounding apart, the same numbers.
    """
    trajectory = []
    sample(fake_model, SHAPE, schedule, prediction, generator=torch.Generator().manual_seed(3),
           callback=trajectory.append, **options)
    return trajectory


@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("schedule_name", ["linear", "scaled_linear"])
def test_ddim_trajectory_matches_diffusers(prediction, spacing, eta, schedule_name):
    """diffusers' DDIMScheduler with clipping, fed the same outputs and the same noise stream.

    use_clipped_model_output=True: like ours, it then recomputes eps from the clipped x0 (its default keeps the
    unclipped eps). linspace is not compared: DDIMScheduler.step takes the next timestep as t - T // steps, which
    for linspace is not the next one in its own list (999 -> 899 instead of 888 at 10 steps); the linspace
    timesteps themselves are checked above, and the step is the same one.
    """
    from diffusers import DDIMScheduler

    betas, schedule = diffusers_schedule(schedule_name)
    scheduler = DDIMScheduler(num_train_timesteps=1000, trained_betas=betas, clip_sample=True,
                              prediction_type=DIFFUSERS_PREDICTION[prediction], timestep_spacing=spacing)
    scheduler.set_timesteps(10)
    ours = our_trajectory(sample_ddim, schedule, prediction, steps=10, spacing=spacing, eta=eta, clip_x0=True)
    generator = torch.Generator().manual_seed(3)
    x, theirs = torch.randn(SHAPE, generator=generator), []
    for t in scheduler.timesteps:
        output = fake_model(x, torch.full((SHAPE[0],), int(t)))
        x = scheduler.step(output, t, x, eta=eta, use_clipped_model_output=True, generator=generator).prev_sample
        theirs.append(x)
    assert [step.t for step in ours] == scheduler.timesteps.tolist()
    assert any((step.x0.abs() == 1).any() for step in ours)  # the clipping was exercised
    torch.testing.assert_close(torch.stack([step.x_prev for step in ours]), torch.stack(theirs), atol=1e-5, rtol=1e-5)


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # numpy 2 vs diffusers, harmless
@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("steps", [6, 20])
@pytest.mark.parametrize("schedule_name", ["linear", "scaled_linear"])
def test_dpm_solver_trajectory_matches_diffusers(prediction, spacing, steps, schedule_name):
    """DPMSolverMultistepScheduler as DPM-Solver++(2M), given our timesteps (its own spacings differ: its linspace
    and leading leave out t = 0). With final sigma 0 its last step is first order at any number of steps, as ours;
    lower_order_final adds nothing for a second-order solver."""
    from diffusers import DPMSolverMultistepScheduler

    betas, schedule = diffusers_schedule(schedule_name)
    scheduler = DPMSolverMultistepScheduler(num_train_timesteps=1000, trained_betas=betas, algorithm_type="dpmsolver++",
                                            solver_order=2, prediction_type=DIFFUSERS_PREDICTION[prediction],
                                            lower_order_final=True, final_sigmas_type="zero")
    scheduler.set_timesteps(timesteps=sampling_timesteps(1000, steps, spacing))
    ours = our_trajectory(sample_dpm_solver, schedule, prediction, steps=steps, spacing=spacing, clip_x0=False)
    x, theirs = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3)), []
    for t in scheduler.timesteps:
        x = scheduler.step(fake_model(x, torch.full((SHAPE[0],), int(t))), t, x).prev_sample
        theirs.append(x)
    assert [step.t for step in ours] == scheduler.timesteps.tolist()
    torch.testing.assert_close(torch.stack([step.x_prev for step in ours]), torch.stack(theirs), atol=1e-5, rtol=1e-5)


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # numpy 2 vs diffusers, harmless
@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("steps", [6, 20])
@pytest.mark.parametrize("schedule_name", ["linear", "scaled_linear"])
@pytest.mark.parametrize("clip_x0", [False, True])
def test_sde_dpm_solver_trajectory_matches_diffusers(prediction, spacing, steps, schedule_name, clip_x0):
    """DPMSolverMultistepScheduler as SDE-DPM-Solver++(2M) (its default solver_type "midpoint" is the same
    second-order x0 as ours), given our timesteps, the same outputs and the same noise. Clipping x0 to [-1, 1] is
    its dynamic thresholding with a threshold that cannot exceed 1 (sample_max_value = 1).

    The noise: our sampler draws from its generator as it always does (x_T, then one draw per step except the
    last); the test draws the same list from a generator of the same seed and hands it to diffusers' step as
    variance_noise. The library is not bent for the test, and diffusers' own draw policy (it also draws on the last
    step, whose noise scale is 0) does not matter; a different draw order or count on our side changes the noise
    and fails the comparison, and the generator's next number checks the count.

    Tolerance: 1e-5, relative to the size of the state. Unclipped, the eps stand-in read at alpha_bar = 4e-5
    (linear, t = 999) gives an x0 of about 100 and states up to about 400; both sides compute in float32 and
    agree to about 1e-6 of that (a few units in the last place), which an element-wise 1e-5 misses on small entries.
    """
    from diffusers import DPMSolverMultistepScheduler

    betas, schedule = diffusers_schedule(schedule_name)
    scheduler = DPMSolverMultistepScheduler(num_train_timesteps=1000, trained_betas=betas, solver_order=2,
                                            algorithm_type="sde-dpmsolver++", lower_order_final=True,
                                            prediction_type=DIFFUSERS_PREDICTION[prediction], final_sigmas_type="zero",
                                            thresholding=clip_x0, sample_max_value=1.0)
    scheduler.set_timesteps(timesteps=sampling_timesteps(1000, steps, spacing))
    ours, generator = [], torch.Generator().manual_seed(3)
    sample_dpm_solver_sde(fake_model, SHAPE, schedule, prediction, steps=steps, spacing=spacing, clip_x0=clip_x0,
                          generator=generator, callback=ours.append)
    reference = torch.Generator().manual_seed(3)
    x, theirs = torch.randn(SHAPE, generator=reference), []
    noises = [torch.randn(SHAPE, generator=reference) for _ in range(steps - 1)] + [torch.zeros(SHAPE)]
    assert torch.equal(torch.randn(1, generator=generator), torch.randn(1, generator=reference))  # as many draws
    for t, noise in zip(scheduler.timesteps, noises):
        x = scheduler.step(fake_model(x, torch.full((SHAPE[0],), int(t))), t, x, variance_noise=noise).prev_sample
        theirs.append(x)
    assert [step.t for step in ours] == scheduler.timesteps.tolist()
    if clip_x0:
        assert any((step.x0.abs() == 1).any() for step in ours)  # the clipping was exercised
    theirs = torch.stack(theirs)  # (steps, B, C, H, W)
    scale = max(1.0, theirs.abs().max().item())
    torch.testing.assert_close(torch.stack([step.x_prev for step in ours]), theirs, atol=1e-5 * scale, rtol=1e-5)


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # numpy 2 vs diffusers, harmless
@pytest.mark.parametrize("name, scheduler_name",
                         [("euler", "EulerDiscreteScheduler"), ("heun", "HeunDiscreteScheduler")])
@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("schedule_name", ["linear", "scaled_linear"])
def test_karras_euler_and_heun_trajectories_match_diffusers(name, scheduler_name, prediction, spacing, schedule_name):
    """diffusers' Euler and Heun schedulers with use_karras_sigmas=True: the same noise levels, the same fractional
    timesteps given to the model (log sigma interpolated between integer steps), the same states.

    diffusers keeps EDM's x = x_t / sqrt(alpha_bar) = x_t sqrt(1 + sigma^2); we keep the network's x_t and compare
    after converting. Both start from the same x_T: diffusers' own init_noise_sigma would draw x = sigma_max z for
    linspace and trailing, that is an x_T of variance 1 - alpha_bar instead of 1. Heun's scheduler takes its
    predictor and corrector as two calls of step() (timesteps doubled); we compare after each corrector.
    """
    import diffusers

    betas, schedule = diffusers_schedule(schedule_name)
    scheduler = getattr(diffusers, scheduler_name)(num_train_timesteps=1000, trained_betas=betas,
                                                   use_karras_sigmas=True, timestep_spacing=spacing,
                                                   prediction_type=DIFFUSERS_PREDICTION[prediction])
    scheduler.set_timesteps(10)
    ours = our_trajectory(SAMPLERS[name], schedule, prediction, steps=10, spacing=spacing, clip_x0=False)
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))
    x, theirs = x_T * (1 + scheduler.sigmas[0] ** 2).sqrt(), []
    for t in scheduler.timesteps:
        output = fake_model(scheduler.scale_model_input(x, t), torch.full((SHAPE[0],), float(t)))
        x = scheduler.step(output, t, x).prev_sample
        theirs.append(x / (1 + scheduler.sigmas[scheduler.step_index] ** 2).sqrt())  # back to x_t
    if name == "heun":
        theirs = theirs[1::2] + theirs[-1:]  # after each corrector, and the last step (an Euler step into sigma 0)
    theirs_t = scheduler.timesteps.tolist()[::2 if name == "heun" else 1]
    np.testing.assert_allclose([step.t for step in ours], theirs_t, atol=1e-3)
    torch.testing.assert_close(torch.stack([step.x_prev for step in ours]), torch.stack(theirs), atol=1e-5, rtol=1e-5)

# ------------------------------------------------------------------ the loop


@pytest.mark.parametrize("steps", [100, 10])
def test_exact_denoiser_of_one_image_lands_on_it_with_the_right_marginals(steps):
    """Data = one image x*. With the exact denoiser and beta_tilde, every x_t the sampler visits is distributed
    as q(x_t | x*) = N(sqrt(alpha_bar) x*, 1 - alpha_bar), and the last step lands on x*."""
    schedule = make_schedule("linear", 100)
    x_star = torch.tensor([[[[0.9, -0.5], [0.2, -1.0]]]])  # (1, 1, 2, 2)
    seen = []

    def check_marginal(step: DenoisingStep):
        alpha_bar = float(schedule.alpha_bar[step.t])
        mean = step.x_t.mean(dim=0)  # (B, 1, 2, 2) -> (1, 2, 2)
        variance = step.x_t.var(dim=0)
        # 5 standard errors of the estimates (+0.01 for x_T ~ N(0, I) instead of q(x_T | x*), whose mean is ~0.007)
        mean_tolerance = 5 * ((1 - alpha_bar) / n) ** 0.5 + 0.01
        torch.testing.assert_close(mean, alpha_bar**0.5 * x_star[0], atol=mean_tolerance, rtol=0)
        torch.testing.assert_close(variance, torch.full_like(variance, 1 - alpha_bar), rtol=5 * (2 / n) ** 0.5, atol=0)
        seen.append(step.t)

    n = 4000
    x = sample_ddpm(one_point_denoiser(schedule, x_star), (n, 1, 2, 2), schedule, "eps", steps=steps,
                    variance="beta_tilde", clip_x0=False, generator=torch.Generator().manual_seed(0),
                    callback=check_marginal)
    assert seen == sampling_timesteps(100, steps)
    torch.testing.assert_close(x, x_star.expand(n, -1, -1, -1), atol=1e-4, rtol=0)


def test_callback_sees_every_step_and_counts_network_evaluations():
    schedule = make_schedule("cosine", 50)
    model = tiny_unet(num_classes=10)
    trajectory = []
    x = sample_ddpm(model_denoiser(model, class_labels=torch.tensor([3, 7])), (2, 1, 8, 8), schedule, "eps", steps=12,
                    generator=torch.Generator().manual_seed(0), callback=trajectory.append)
    assert [step.t for step in trajectory] == sampling_timesteps(50, 12)
    assert [step.t_prev for step in trajectory] == sampling_timesteps(50, 12)[1:] + [-1]
    assert [step.nfe for step in trajectory] == list(range(1, 13))
    assert [step.index for step in trajectory] == list(range(12))
    for before, after in zip(trajectory, trajectory[1:]):
        assert torch.equal(before.x_prev, after.x_t)
    assert torch.equal(trajectory[-1].x_prev, x)
    for step in trajectory:  # the reported (x0, eps) is consistent: x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps
        alpha_bar = float(schedule.alpha_bar[step.t])
        torch.testing.assert_close(alpha_bar**0.5 * step.x0 + (1 - alpha_bar) ** 0.5 * step.eps, step.x_t,
                                   atol=1e-4, rtol=1e-4)
        assert step.x0.abs().max() <= 1.0  # clipped


def test_same_seed_same_images_other_seed_other_images():
    schedule = make_schedule("linear", 40)
    denoiser = model_denoiser(tiny_unet())

    def draw(seed):
        generator = torch.Generator().manual_seed(seed)
        return sample_ddpm(denoiser, (3, 1, 8, 8), schedule, "eps", steps=8, generator=generator)

    assert torch.equal(draw(0), draw(0))
    assert not torch.allclose(draw(0), draw(1), atol=1e-3)


def test_eps_prediction_at_zero_terminal_snr_is_refused_clearly():
    schedule = make_schedule("linear", 50, zero_terminal_snr=True)
    with pytest.raises(ValueError, match="zero SNR"):
        sample_ddpm(lambda x, t: x, (1, 1, 2, 2), schedule, "eps", generator=torch.Generator().manual_seed(0))
    x_star = torch.full((1, 1, 2, 2), 0.5)
    x = sample_ddpm(lambda x_t, t: x_star.expand_as(x_t), (3, 1, 2, 2), schedule, "x0",
                    generator=torch.Generator().manual_seed(0))  # x0 prediction is fine there
    torch.testing.assert_close(x, x_star.expand(3, -1, -1, -1))


def test_x0_and_eps_agree_with_forward_conversions():
    """The loop reads outputs through minidiff.diffusion.forward, the same function training's targets come from."""
    schedule = make_schedule("cosine", 100)
    x_t = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    output = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    for prediction in ["eps", "x0", "v"]:
        x0, eps = predict_x0_and_eps(lambda x, t: output, prediction, x_t, 40, float(schedule.alpha_bar[40]))
        expected = x0_and_eps_from_output(prediction, output, x_t, float(schedule.alpha_bar[40]))
        torch.testing.assert_close((x0, eps), expected)



@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("spacing", SPACINGS)
def test_every_sampler_with_the_exact_denoiser_of_one_image_lands_on_it(name, spacing):
    """Data = one image x*. The exact denoiser predicts x0 = x* everywhere, so every sampler ends on x*.

    That includes the stochastic ones, DDPM and SDE-DPM-Solver++, whose last step is noise-free.
    The deterministic ones do more: the probability-flow ODE's solution from x_T is then
    x_t = sqrt(alpha_bar) x* + sqrt(1 - alpha_bar) eps_T with eps_T the noise in x_T (the predicted eps never changes
    along it), and a straight line in sigma, which DDIM, DPM-Solver++, Euler and Heun all follow exactly."""
    schedule = make_schedule("linear", 100)
    x_star = torch.tensor([[[[0.9, -0.5], [0.2, -1.0]]]])  # (1, 1, 2, 2)
    trajectory = []
    x = SAMPLERS[name](one_point_denoiser(schedule, x_star), (4, 1, 2, 2), schedule, "eps", steps=7, spacing=spacing,
                       clip_x0=False, generator=torch.Generator().manual_seed(0), callback=trajectory.append)
    torch.testing.assert_close(x, x_star.expand(4, -1, -1, -1), atol=1e-5, rtol=0)
    if name in ("ddpm", "dpm++sde"):  # stochastic: fresh noise moves them off the ODE's path
        return
    x_T, alpha_bar_T = trajectory[0].x_t, alpha_bar_at(schedule, trajectory[0].t)
    eps_T = (x_T - alpha_bar_T**0.5 * x_star) / (1 - alpha_bar_T) ** 0.5
    for step in trajectory:
        alpha_bar_prev = alpha_bar_at(schedule, step.t_prev) if step.t_prev >= 0 else 1.0
        on_the_path = alpha_bar_prev**0.5 * x_star + (1 - alpha_bar_prev) ** 0.5 * eps_T
        torch.testing.assert_close(step.x_prev, on_the_path, atol=1e-5, rtol=0)


def test_sde_dpm_solver_with_the_exact_denoiser_of_one_image_keeps_the_true_marginals():
    """Data = one image x*: the exact denoiser predicts x0 = x* at every step, so D = x* (second order included), and
    the step keeps x_t ~ q(x_t | x*) = N(sqrt(alpha_bar) x*, 1 - alpha_bar): the noise part e^{-h} eps_t +
    sqrt(1 - e^{-2h}) z stays standard normal. Checked on every x_t visited, as for DDPM above."""
    schedule = make_schedule("linear", 100)
    x_star = torch.tensor([[[[0.9, -0.5], [0.2, -1.0]]]])  # (1, 1, 2, 2)
    n, trajectory = 4000, []
    x = sample_dpm_solver_sde(one_point_denoiser(schedule, x_star), (n, 1, 2, 2), schedule, "eps", steps=10,
                              clip_x0=False, generator=torch.Generator().manual_seed(0), callback=trajectory.append)
    for step in trajectory[1:]:  # x_T ~ N(0, I) itself is not q(x_T | x*): start after the first step
        alpha_bar = float(schedule.alpha_bar[step.t])
        noise_part = (step.x_t - alpha_bar**0.5 * x_star) / (1 - alpha_bar) ** 0.5  # (n, 1, 2, 2)
        # 5 standard errors of a mean (1 / sqrt(n)) and of a variance (sqrt(2 / n))
        torch.testing.assert_close(noise_part.mean(dim=0), torch.zeros(1, 2, 2), atol=5 / n**0.5, rtol=0)
        torch.testing.assert_close(noise_part.var(dim=0), torch.ones(1, 2, 2), atol=5 * (2 / n) ** 0.5, rtol=0)
    torch.testing.assert_close(x, x_star.expand(n, -1, -1, -1), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name, nfe", [("ddpm", 7), ("ddim", 7), ("dpm++", 7), ("dpm++sde", 7), ("euler", 7),
                                       ("heun", 2 * 7 - 1)])
def test_each_sampler_reports_every_step_and_counts_its_network_evaluations(name, nfe):
    """One network evaluation per step; Heun two, except into sigma = 0 (Karras et al. 2022, Algorithm 1)."""
    schedule = make_schedule("cosine", 100)
    calls = []

    def denoiser(x_t, t):
        calls.append(t)
        return fake_model(x_t, t)

    trajectory = []
    SAMPLERS[name](denoiser, (2, 1, 4, 4), schedule, "eps", steps=7, generator=torch.Generator().manual_seed(0),
                   callback=trajectory.append)
    assert [step.index for step in trajectory] == list(range(7)) and trajectory[-1].t_prev == -1
    assert trajectory[-1].nfe == len(calls) == nfe
    assert all(before.t > after.t for before, after in zip(trajectory, trajectory[1:]))
    for before, after in zip(trajectory, trajectory[1:]):
        assert before.t_prev == after.t and torch.equal(before.x_prev, after.x_t)


def test_deterministic_ddim_draws_nothing_after_x_T():
    """eta = 0: the generator is used for x_T alone, so the same x_T always gives the same images."""
    schedule = make_schedule("linear", 100)
    shape = (3, 1, 4, 4)

    def draw(seed, eta):
        generator = torch.Generator().manual_seed(seed)
        x = sample_ddim(fake_model, shape, schedule, "eps", steps=10, eta=eta, generator=generator)
        return x, torch.randn(1, generator=generator)  # what the generator gives next

    reference = torch.Generator().manual_seed(0)
    torch.randn(shape, generator=reference)  # x_T only
    x, after = draw(0, eta=0.0)
    assert torch.equal(after, torch.randn(1, generator=reference))
    assert torch.equal(draw(0, eta=0.0)[0], x)
    assert not torch.allclose(draw(1, eta=0.0)[0], x, atol=1e-3)
    x_noisy, after_noisy = draw(0, eta=0.5)  # fresh noise on each step: other images from the same x_T
    assert not torch.equal(after_noisy, after) and not torch.allclose(x_noisy, x, atol=1e-3)


@pytest.mark.parametrize("name", ["ddim", "dpm++", "dpm++sde"])
def test_zero_terminal_snr_samplers_start_from_pure_noise(name):
    """At alpha_bar = 0 an x0- (or v-) model still predicts x0; DDIM and DPM-Solver++ take that first step (lambda
    = -inf there). Euler and Heun need a finite sigma_max and say so."""
    schedule = make_schedule("linear", 50, zero_terminal_snr=True)
    x_star = torch.full((1, 1, 2, 2), 0.5)
    for spacing in ["linspace", "trailing"]:  # both start at t = T-1, the zero-SNR step
        x = SAMPLERS[name](lambda x_t, t: x_star.expand_as(x_t), (3, 1, 2, 2), schedule, "x0", steps=5,
                           spacing=spacing, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(x, x_star.expand(3, -1, -1, -1))
    for karras in ["euler", "heun"]:
        with pytest.raises(ValueError, match="zero terminal SNR"):
            SAMPLERS[karras](lambda x_t, t: x_t, (1, 1, 2, 2), schedule, "x0", generator=torch.Generator())


def test_each_samplers_options_are_what_its_function_takes_and_others_are_refused():
    import inspect

    from minidiff.diffusion.samplers import FLOW_SAMPLERS, SAMPLER_OPTIONS, SAMPLERS, sample
    model_arguments = {"denoiser", "shape", "schedule", "prediction"}
    for name, function in {**SAMPLERS, **FLOW_SAMPLERS}.items():
        assert set(SAMPLER_OPTIONS[name]) == set(inspect.signature(function).parameters) - model_arguments, name
    schedule = make_schedule("cosine", 10)
    with pytest.raises(TypeError, match="stpes: not an option of the 'ddim' sampler"):
        sample("ddim", lambda x, t: torch.zeros_like(x), (1, 1, 2, 2), schedule, "eps", stpes=5)
