r"""The bridge between VP and rectified-flow models: either kind of model, asked in the other's coordinates.

A VP x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps, divided by sqrt(alpha_bar) + sqrt(1 - alpha_bar), is the
point of the straight path x_t = (1 - t) x0 + t eps at t = sqrt(1 - alpha_bar) / (sqrt(alpha_bar) + sqrt(1 - alpha_bar))
(`minidiff.diffusion.flow`). So `flow_denoiser_from_vp` turns an eps, x0 or v model into one that answers with a
velocity, for the flow samplers (`minidiff.diffusion.samplers.sample_flow_euler`, ...), and `vp_denoiser_from_flow`
turns a rectified-flow model into one that answers with v, for the VP samplers (DDPM, DDIM, DPM-Solver++, ...).
With exact models the two kinds follow the same ODE: from the same noise they land on the same images.

Papers followed:
- Liu, Gong & Liu 2023, "Flow Straight and Fast", sec. 2; Esser et al. 2024 (SD3), sec. 2-3: the straight path as
  one more choice of the weights a_t x0 + b_t eps.
- Karras, Aittala, Aila & Laine 2022 (EDM), Table 1: any such x_t / a_t = x0 + sigma eps, so models are compared
  at equal sigma = b_t / a_t, which is t / (1 - t) on the straight path.
- Salimans & Ho 2022, sec. 4: the v a VP sampler reads (`minidiff.diffusion.forward.v_from_x0_eps`).
"""

import torch

from minidiff.diffusion.flow import alpha_bar_of_flow_time, velocity_from_x0, x0_and_eps_from_velocity
from minidiff.diffusion.forward import expand_like, v_from_x0_eps, x0_and_eps_from_output
from minidiff.diffusion.loop import Denoiser
from minidiff.diffusion.schedule import NoiseSchedule, alpha_bar_at
from minidiff.diffusion.timesteps import timestep_from_sigma


def vp_timestep(schedule: NoiseSchedule, t: float) -> float:
    """The (fractional) step of a VP schedule whose noise level is that of flow time t: EDM's sigma = t / (1 - t);
    clipped to the schedule's range, 0 ... T - 1."""
    if t <= 0.0:
        return 0.0
    if t >= 1.0:
        return float(schedule.T - 1)
    return timestep_from_sigma(schedule, t / (1.0 - t))


def flow_denoiser_from_vp(denoiser: Denoiser, schedule: NoiseSchedule, prediction: str,
                          clip_x0: bool = False) -> Denoiser:
    """A VP model (eps, x0 or v on `schedule`) as a rectified-flow one: (x_t on the straight path, flow times t (B,))
    -> the velocity eps - x0, for the flow samplers. The model is asked at the VP step of the same noise level, with
    x_t rescaled into its coordinates (`minidiff.diffusion.flow.vp_from_flow`), and its x0 is read as the velocity
    from x0 through x_t. Outside the schedule's range of noise levels it is asked at its first or last step.

    clip_x0: clip the model's x0 to the data range [-1, 1] first, as the VP samplers' clip_x0 does. An eps model
    needs it when sampled from t = 1: its x0 = (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar) multiplies an
    error in eps by 1 / sqrt(alpha_bar) (about 20,000 at the cosine schedule's last step), and so does the velocity
    (an error d in x0 moves u by d / t). Leave it off for data outside [-1, 1]."""
    def velocity(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        steps = torch.tensor([vp_timestep(schedule, float(time)) for time in t], dtype=torch.float32)  # (B,)
        alpha_bar_model = torch.tensor([alpha_bar_at(schedule, float(step)) for step in steps], dtype=torch.float64)
        alpha_bar = torch.tensor([alpha_bar_of_flow_time(float(time)) for time in t], dtype=torch.float64)  # (B,)
        # $x^{\mathrm{VP}}_t = x^{\mathrm{flow}}_t (\sqrt{\bar\alpha} + \sqrt{1 - \bar\alpha})$
        x_vp = x_t * expand_like(alpha_bar.sqrt() + (1 - alpha_bar).sqrt(), x_t)
        output = denoiser(x_vp, steps.to(x_t.device))
        x0, _ = x0_and_eps_from_output(prediction, output, x_vp, alpha_bar_model)
        if clip_x0:
            x0 = x0.clamp(-1.0, 1.0)
        return velocity_from_x0(x_t, x0, t.to(torch.float64))  # $u = (x_t - \hat x_0) / t$ (t > 0 in every sampler)
    return velocity


def vp_denoiser_from_flow(denoiser: Denoiser, schedule: NoiseSchedule) -> Denoiser:
    """A rectified-flow model as a VP one on `schedule` that predicts v: (VP x_t, steps t (B,)) -> v, for the VP
    samplers with prediction 'v'. The model is asked at the flow time of each step's noise level, with x_t rescaled
    onto the straight path (`minidiff.diffusion.flow.flow_from_vp`)."""
    def v_prediction(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha_bar = torch.tensor([alpha_bar_at(schedule, float(step)) for step in t], dtype=torch.float64)  # (B,)
        a, s = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
        # $t_{\mathrm{flow}} = \sqrt{1 - \bar\alpha} / (\sqrt{\bar\alpha} + \sqrt{1 - \bar\alpha})$
        times = s / (a + s)  # (B,)
        # $x^{\mathrm{flow}}_t = x^{\mathrm{VP}}_t / (\sqrt{\bar\alpha} + \sqrt{1 - \bar\alpha})$
        x_flow = x_t / expand_like(a + s, x_t)
        velocity = denoiser(x_flow, times.float().to(x_t.device))
        x0, eps = x0_and_eps_from_velocity(x_flow, velocity, times)
        return v_from_x0_eps(x0, eps, alpha_bar)
    return v_prediction
