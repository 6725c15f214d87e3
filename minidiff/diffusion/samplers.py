r"""The samplers, by name: each picks its timesteps, draws x_T ~ N(0, I) and runs the one loop with its own step.

`sample(name, ...)` is the one entry point: the pipeline, the sample command, the sampler race and the digit
evaluation all call it. `SAMPLERS` maps the names of the CLI's --sampler to the `sample_*` functions, each a few
lines: the timesteps (`minidiff.diffusion.timesteps`: a spacing of the T steps, or Karras sigmas), the starting
point (pure noise, or for an edit the input noised part of the way, `minidiff.diffusion.editing`), and the update
that `minidiff.diffusion.loop.denoising_loop` applies at every step (`minidiff.diffusion.steps`,
`minidiff.diffusion.dpm_solver`). The equations are in those modules.

Papers followed:
- Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models": ancestral sampling, Algorithm 2.
- Nichol & Dhariwal 2021, "Improved Denoising Diffusion Probabilistic Models", sec. 4, and Lin, Liu, Li & Yang
  2023, "Common Diffusion Noise Schedules and Sample Steps are Flawed", Table 2: fewer steps, and where they fall.
- Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models" (DDIM): eq. (12) and (16), from deterministic
  (eta = 0) to DDPM's variance (eta = 1).
- Lu, Zhou, Bao, Chen, Li & Zhu 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic
  Models" (Lu et al. 2022b): DPM-Solver++(2M), Algorithm 2, and its SDE variant SDE-DPM-Solver++(2M).
- Karras, Aittala, Aila & Laine 2022, "Elucidating the Design Space of Diffusion-Based Generative Models" (EDM):
  the noise levels of eq. 5, and Euler's and Heun's method on them, Algorithm 1.
- Liu, Gong & Liu 2023, "Flow Straight and Fast", sec. 2, and Lipman et al. 2023, "Flow Matching for Generative
  Modeling", sec. 6: a rectified-flow model's ODE dx/dt = u(x, t), integrated from t = 1 to 0 on steps even in t
  with Euler's, the midpoint and Heun's method (`sample_flow_*`; the path and its steps: `minidiff.diffusion.flow`).

Notation (variable -> symbol). t is 0-based: t = 0 is one step of noise, t = T-1 the last.

    x_T             x_T            the starting point: N(0, I) noise (for an edit, the input noised to the first step)
    steps           S              how many timesteps the sampler visits, out of the T it was trained on
    eta             \eta           DDIM's share of fresh noise per step: 0 deterministic ... 1 like DDPM
    denoiser        (x_t, t) -> the network's output (eps, x0 or v, whichever it was trained to predict)
    NFE             network evaluations (calls of the denoiser): the honest cost of a sample
"""

import dataclasses
from collections.abc import Callable

import torch

from minidiff.diffusion.arguments import one_of, real_number
from minidiff.diffusion.dpm_solver import dpm_solver_2m_update
from minidiff.diffusion.editing import Edit, starting_point
from minidiff.diffusion.flow import FLOW, flow_euler_step, flow_heun_step, flow_time, velocity_from_eps
from minidiff.diffusion.loop import Denoiser, DenoisingStep, check_sampling, denoising_loop, gaussian_noise
from minidiff.diffusion.schedule import NoiseSchedule
from minidiff.diffusion.steps import VARIANCES, ddim_step, ddpm_step, euler_update, heun_correction
from minidiff.diffusion.timesteps import edit_timesteps, karras_timesteps


def start(shape: tuple[int, ...], schedule: NoiseSchedule, steps: int | None, spacing: str,
          generator: torch.Generator | None, device: torch.device | str, edit: Edit | None,
          karras: bool = False) -> tuple[torch.Tensor, list, Edit | None]:
    """What every sampler starts with: x_T, the timesteps to visit, and the edit.

    The timesteps are `steps` of the T placed by `spacing`, or for an edit (SDEdit) the same spacing laid over
    0 ... t_0 = strength * T (`minidiff.diffusion.timesteps.edit_timesteps`); with `karras`, Karras noise levels over
    the same range. x_T is N(0, I) noise from `generator`, or the input noised to the first timestep. An edit
    without its own generator re-noises its kept region from the sampler's, so one generator reproduces a sample.
    """
    timesteps = edit_timesteps(schedule.T, steps, spacing, None if edit is None else edit.strength)
    if karras and timesteps:
        timesteps = karras_timesteps(schedule, timesteps)
    if edit is not None and edit.generator is None:
        edit = dataclasses.replace(edit, generator=generator)
    x_T = starting_point(gaussian_noise(shape, generator, device), timesteps, schedule, edit)
    return x_T, timesteps, edit


def sample_ddpm(denoiser: Denoiser, shape: tuple[int, ...], schedule: NoiseSchedule, prediction: str = "eps",
                steps: int | None = None, variance: str = "beta_tilde", clip_x0: bool = True,
                generator: torch.Generator | None = None, device: torch.device | str = "cpu",
                callback: Callable[[DenoisingStep], None] | None = None, spacing: str = "linspace",
                edit: Edit | None = None) -> torch.Tensor:
    """DDPM ancestral sampling (Ho et al. 2020, Algorithm 2): x_T ~ N(0, I), then one `ddpm_step` per timestep.

    steps: None for all T steps, or fewer, placed by `spacing` (see `sampling_timesteps`). One network
    evaluation per step. Returns the final images (B, C, H, W), roughly in [-1, 1].
    """
    check_sampling(denoiser, shape, schedule, prediction, clip_x0, generator, device, callback, edit)
    one_of("variance", variance, VARIANCES)
    x_T, timesteps, edit = start(shape, schedule, steps, spacing, generator, device, edit)  # Algorithm 2, line 1

    def update(x_t, x0, eps, alpha_bar, alpha_bar_prev):
        # Algorithm 2, line 3: no noise on the last step, into the clean image (alpha_bar_prev = 1)
        noise = None if alpha_bar_prev == 1.0 else gaussian_noise(x_t.shape, generator, device)
        return ddpm_step(x_t, x0, alpha_bar, alpha_bar_prev, noise, variance)

    return denoising_loop(denoiser, x_T, schedule, prediction, timesteps, update, clip_x0, callback, edit=edit)


def sample_ddim(denoiser: Denoiser, shape: tuple[int, ...], schedule: NoiseSchedule, prediction: str = "eps",
                steps: int | None = None, spacing: str = "linspace", eta: float = 0.0, clip_x0: bool = True,
                generator: torch.Generator | None = None, device: torch.device | str = "cpu",
                callback: Callable[[DenoisingStep], None] | None = None, edit: Edit | None = None) -> torch.Tensor:
    """DDIM sampling (Song et al. 2021): x_T ~ N(0, I), then one `ddim_step` per timestep; one NFE per step.

    With eta = 0 the generator draws x_T and nothing else: the same x_T always gives the same image.
    """
    check_sampling(denoiser, shape, schedule, prediction, clip_x0, generator, device, callback, edit)
    eta = real_number("eta", eta, 0.0, 1.0, what="0 = deterministic DDIM, 1 = DDPM's variance")
    x_T, timesteps, edit = start(shape, schedule, steps, spacing, generator, device, edit)

    def update(x_t, x0, eps, alpha_bar, alpha_bar_prev):
        noise = gaussian_noise(x_t.shape, generator, device) if eta > 0 and alpha_bar_prev < 1.0 else None
        return ddim_step(x0, eps, alpha_bar, alpha_bar_prev, eta, noise)

    return denoising_loop(denoiser, x_T, schedule, prediction, timesteps, update, clip_x0, callback, edit=edit)


def sample_dpm_solver(denoiser: Denoiser, shape: tuple[int, ...], schedule: NoiseSchedule, prediction: str = "eps",
                      steps: int | None = None, spacing: str = "linspace", clip_x0: bool = True,
                      generator: torch.Generator | None = None, device: torch.device | str = "cpu",
                      callback: Callable[[DenoisingStep], None] | None = None,
                      edit: Edit | None = None) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022b, Algorithm 2) for the probability-flow ODE: one NFE per step, second order
    except on the first and the last step (see `minidiff.diffusion.dpm_solver.dpm_solver_2m_update`)."""
    check_sampling(denoiser, shape, schedule, prediction, clip_x0, generator, device, callback, edit)
    x_T, timesteps, edit = start(shape, schedule, steps, spacing, generator, device, edit)
    return denoising_loop(denoiser, x_T, schedule, prediction, timesteps, dpm_solver_2m_update(), clip_x0, callback,
                          edit=edit)


def sample_dpm_solver_sde(denoiser: Denoiser, shape: tuple[int, ...], schedule: NoiseSchedule, prediction: str = "eps",
                          steps: int | None = None, spacing: str = "linspace", clip_x0: bool = True,
                          generator: torch.Generator | None = None, device: torch.device | str = "cpu",
                          callback: Callable[[DenoisingStep], None] | None = None,
                          edit: Edit | None = None) -> torch.Tensor:
    """SDE-DPM-Solver++(2M) (Lu et al. 2022b): DPM-Solver++(2M) for the reverse SDE, one NFE per step.

    The generator draws x_T, then fresh noise on every step but the last
    (`minidiff.diffusion.dpm_solver.dpm_solver_sde_2m_step`)."""
    check_sampling(denoiser, shape, schedule, prediction, clip_x0, generator, device, callback, edit)
    x_T, timesteps, edit = start(shape, schedule, steps, spacing, generator, device, edit)
    update = dpm_solver_2m_update(noise_source=lambda noise_shape: gaussian_noise(noise_shape, generator, device))
    return denoising_loop(denoiser, x_T, schedule, prediction, timesteps, update, clip_x0, callback, edit=edit)


def sample_euler(denoiser: Denoiser, shape: tuple[int, ...], schedule: NoiseSchedule, prediction: str = "eps",
                 steps: int | None = None, spacing: str = "linspace", clip_x0: bool = True,
                 generator: torch.Generator | None = None, device: torch.device | str = "cpu",
                 callback: Callable[[DenoisingStep], None] | None = None, edit: Edit | None = None) -> torch.Tensor:
    """Euler's method on Karras sigmas (Karras et al. 2022, eq. 5 and Algorithm 1 without its correction).

    The `steps` noise levels span the same range as the spacing's timesteps, placed by eq. 5 (rho = 7), then
    a last step into sigma = 0. One NFE per step. x_T ~ N(0, I), as for every sampler here.
    """
    check_sampling(denoiser, shape, schedule, prediction, clip_x0, generator, device, callback, edit)
    x_T, timesteps, edit = start(shape, schedule, steps, spacing, generator, device, edit, karras=True)
    return denoising_loop(denoiser, x_T, schedule, prediction, timesteps, euler_update, clip_x0, callback, edit=edit)


def sample_heun(denoiser: Denoiser, shape: tuple[int, ...], schedule: NoiseSchedule, prediction: str = "eps",
                steps: int | None = None, spacing: str = "linspace", clip_x0: bool = True,
                generator: torch.Generator | None = None, device: torch.device | str = "cpu",
                callback: Callable[[DenoisingStep], None] | None = None, edit: Edit | None = None) -> torch.Tensor:
    """Heun's method on Karras sigmas (Karras et al. 2022, Algorithm 1): an Euler step, then its correction.

    Two NFE per step, except the last, into sigma = 0, which stays an Euler step: 2 * steps - 1 in all.
    """
    check_sampling(denoiser, shape, schedule, prediction, clip_x0, generator, device, callback, edit)
    x_T, timesteps, edit = start(shape, schedule, steps, spacing, generator, device, edit, karras=True)
    return denoising_loop(denoiser, x_T, schedule, prediction, timesteps, euler_update, clip_x0, callback,
                          correct=heun_correction, edit=edit)


def flow_times(steps: int) -> list[float]:
    """The times a flow sampler visits: 1, 1 - 1/N, ..., 1/N, falling; the loop ends at t = 0, the image."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a whole number >= 1, got {steps!r}")
    return [1.0 - i / steps for i in range(steps)]


def sample_flow_euler(denoiser: Denoiser, shape: tuple[int, ...], prediction: str = FLOW, steps: int = 50,
                      clip_x0: bool = False, generator: torch.Generator | None = None,
                      device: torch.device | str = "cpu",
                      callback: Callable[[DenoisingStep], None] | None = None) -> torch.Tensor:
    """Euler's method in t (Liu et al. 2023, sec. 2): x_1 ~ N(0, I), then x <- x + (t' - t) u(x, t). One NFE per step.

    denoiser(x_t, t) returns the velocity at flow times t (B,); prediction must be 'flow'. Returns (B, C, H, W).
    """
    def update(x_t, x0, eps, alpha_bar, alpha_bar_prev):
        return flow_euler_step(x_t, eps - x0, flow_time(alpha_bar), flow_time(alpha_bar_prev))

    x_1 = gaussian_noise(shape, generator, device)
    return denoising_loop(denoiser, x_1, None, prediction, flow_times(steps), update, clip_x0, callback)


def sample_flow_midpoint(denoiser: Denoiser, shape: tuple[int, ...], prediction: str = FLOW, steps: int = 25,
                         clip_x0: bool = False, generator: torch.Generator | None = None,
                         device: torch.device | str = "cpu",
                         callback: Callable[[DenoisingStep], None] | None = None) -> torch.Tensor:
    r"""The explicit midpoint method in t: half an Euler step to the middle of the step, then the whole step from its
    start with the velocity found there:
    $x_{t'} = x_t + (t' - t)\, u(x_t + \tfrac{t' - t}{2} u(x_t, t), \tfrac{t + t'}{2})$.

    The loop visits each step's start and its midpoint as two timesteps, so it reports both; the update at a start
    keeps its point for the update at the midpoint. 2 NFE per step.
    """
    times = flow_times(steps)
    ends = times[1:] + [0.0]
    visits = [time for start, end in zip(times, ends) for time in (start, 0.5 * (start + end))]
    step_start = {}  # the step's starting point, kept from its first half for its second

    def update(x_t, x0, eps, alpha_bar, alpha_bar_prev):
        t, t_next = flow_time(alpha_bar), flow_time(alpha_bar_prev)
        if not step_start:  # at the start: half an Euler step, to the midpoint
            step_start.update(x=x_t, t=t)
            return flow_euler_step(x_t, eps - x0, t, t_next)
        x_start, t_start = step_start.pop("x"), step_start.pop("t")  # at the midpoint: the whole step
        return flow_euler_step(x_start, eps - x0, t_start, t_next)

    x_1 = gaussian_noise(shape, generator, device)
    return denoising_loop(denoiser, x_1, None, prediction, visits, update, clip_x0, callback)


def sample_flow_heun(denoiser: Denoiser, shape: tuple[int, ...], prediction: str = FLOW, steps: int = 25,
                     clip_x0: bool = False, generator: torch.Generator | None = None,
                     device: torch.device | str = "cpu",
                     callback: Callable[[DenoisingStep], None] | None = None) -> torch.Tensor:
    """Heun's method in t (Karras et al. 2022, Algorithm 1, in flow time): an Euler step, then the step again along
    the average of the velocities at its two ends. 2 NFE per step but the last, into t = 0: 2 * steps - 1 in all."""
    euler = {}  # the Euler step's velocity and end point, kept for its correction

    def update(x_t, x0, eps, alpha_bar, alpha_bar_prev):
        euler["velocity"] = eps - x0
        euler["x_next"] = flow_euler_step(x_t, euler["velocity"], flow_time(alpha_bar), flow_time(alpha_bar_prev))
        return euler["x_next"]

    def correct(x_t, eps, eps_next, alpha_bar, alpha_bar_prev):
        t, t_next = flow_time(alpha_bar), flow_time(alpha_bar_prev)
        velocity_next = velocity_from_eps(euler["x_next"], eps_next, t_next)  # t_next < 1 after any step
        return flow_heun_step(x_t, euler["velocity"], velocity_next, t, t_next)

    x_1 = gaussian_noise(shape, generator, device)
    return denoising_loop(denoiser, x_1, None, prediction, flow_times(steps), update, clip_x0, callback,
                          correct=correct)


# name -> flow sampler, for rectified-flow models (prediction 'flow'); `sample` runs them by name too
FLOW_SAMPLERS = {"flow_euler": sample_flow_euler, "flow_midpoint": sample_flow_midpoint, "flow_heun": sample_flow_heun}


# name -> sampling function; the CLI's --sampler choices
SAMPLERS = {"ddpm": sample_ddpm, "ddim": sample_ddim, "dpm++": sample_dpm_solver, "dpm++sde": sample_dpm_solver_sde,
            "euler": sample_euler, "heun": sample_heun}

# What each sampler takes besides the model's (denoiser, shape, schedule, prediction), for `sample` to check
COMMON_OPTIONS = ("steps", "clip_x0", "generator", "device", "callback")
VP_OPTIONS = (*COMMON_OPTIONS, "spacing", "edit")
SAMPLER_OPTIONS = {"ddpm": (*VP_OPTIONS, "variance"), "ddim": (*VP_OPTIONS, "eta"), "dpm++": VP_OPTIONS,
                   "dpm++sde": VP_OPTIONS, "euler": VP_OPTIONS, "heun": VP_OPTIONS,
                   **{name: COMMON_OPTIONS for name in FLOW_SAMPLERS}}


def sample(name: str, denoiser: Denoiser, shape: tuple[int, ...], schedule: NoiseSchedule | None,
           prediction: str = "eps", **options) -> torch.Tensor:
    """Draw images (B, C, H, W) with the sampler called `name` (a key of SAMPLERS or of FLOW_SAMPLERS): the one
    entry point.

    options go to that sampler: steps, spacing, clip_x0, generator, device, callback, edit, and its own ones
    (DDPM's variance, DDIM's eta). A rectified-flow model (prediction 'flow') samples with the flow samplers
    (`sample_flow_euler`, `sample_flow_midpoint`, `sample_flow_heun`), which need no schedule (None). Raises
    ValueError for an unknown name or a sampler that does not fit the model; every sampler raises TypeError or
    ValueError, naming the argument, for anything it cannot draw with (`minidiff.diffusion.loop.check_sampling`).
    """
    one_of("sampler", name, sorted(SAMPLERS) + sorted(FLOW_SAMPLERS))
    accepted = SAMPLER_OPTIONS[name]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(f"{', '.join(unknown)}: not an option of the {name!r} sampler, which takes {accepted}")
    if name in FLOW_SAMPLERS:
        return FLOW_SAMPLERS[name](denoiser, shape, prediction, **options)
    if prediction == FLOW:
        raise ValueError(f"{name!r} samples VP models (eps, x0, v); a rectified-flow model samples with one of "
                         f"{sorted(FLOW_SAMPLERS)}")
    return SAMPLERS[name](denoiser, shape, schedule, prediction, **options)
