r"""Flow matching on the straight path (rectified flow): the path, its velocity, its time, and the bridge to VP.

A rectified-flow model is trained on the straight line between an image and its noise,
x_t = (1 - t) x0 + t eps with t in [0, 1] (t = 0: the image, t = 1: pure noise), to predict the line's velocity
dx_t/dt = eps - x0. Sampling follows that velocity backwards in t, from noise at t = 1 to an image at t = 0
(`minidiff.diffusion.samplers`: `sample_flow_euler`, `sample_flow_midpoint`, `sample_flow_heun`).

The bridge: a variance-preserving x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps is the same mix of x0 and eps,
only scaled. Divided by sqrt(alpha_bar) + sqrt(1 - alpha_bar) its two weights add up to 1, which is a point of the
straight path at t = sqrt(1 - alpha_bar) / (sqrt(alpha_bar) + sqrt(1 - alpha_bar)). So every flow time t is a noise
level alpha_bar(t) like any other, EDM's sigma is t / (1 - t), and a model trained either way can be asked in the
other's coordinates (`minidiff.diffusion.flow_bridge`).

Papers followed:
- Lipman, Chen, Ben-Hamu, Nickel & Le 2023, "Flow Matching for Generative Modeling": conditional flow matching
  on the optimal-transport path, sec. 4.1 (with sigma_min = 0, and time reversed: their t = 1 is our image).
- Liu, Gong & Liu 2023, "Flow Straight and Fast: Learning to Generate and Transfer Data with Rectified Flow":
  the linear interpolation and its velocity, sec. 2; the straightness S(Z) of a flow, sec. 2.2.
- Esser et al. 2024, "Scaling Rectified Flow Transformers for High-Resolution Image Synthesis" (SD3), sec. 3.1:
  x_t = (1 - t) x0 + t eps in this direction, and the logit-normal distribution of training times, eq. (19).

Notation (variable -> symbol):

    t               t              flow time in [0, 1]: 0 = the clean image, 1 = pure noise (not the VP step t)
    x_t             x_t            (1 - t) x0 + t eps, the point of the straight path at time t
    velocity        u = v_t        the network's target and output, dx_t/dt = eps - x0 (Liu et al.'s X_1 - X_0)
    alpha_bar       \bar\alpha     the VP noise level with the same mix of x0 and eps (the bridge)
"""

import math

import torch

FLOW = "flow"  # DiffusionConfig.prediction of a rectified-flow model: the straight path, velocity target
TIME_SAMPLINGS = ("logit_normal", "uniform")  # how training draws t (Esser et al. 2024, sec. 3.1)


def as_column(t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """A flow time, a float or one per sample (B,), shaped to broadcast against x (B, ...), in x's dtype."""
    t = torch.as_tensor(t, dtype=torch.float64).to(x.dtype).to(x.device)
    if t.ndim == 1:
        t = t.reshape(-1, *([1] * (x.ndim - 1)))  # (B,) -> (B, 1, ..., 1)
    return t


def linear_path(x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    r"""The point of the straight path at time t (Liu et al. 2023, sec. 2; Esser et al. 2024, sec. 3.1)."""
    t = as_column(t, x0)
    # $x_t = (1 - t)\, x_0 + t\, \epsilon$
    return (1 - t) * x0 + t * eps


def velocity_target(x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    r"""What a rectified-flow network learns to output: the straight path's velocity (Lipman et al. 2023, sec. 4.1)."""
    # $u = \frac{d x_t}{d t} = \epsilon - x_0$
    return eps - x0


def sample_flow_times(n: int, generator: torch.Generator | None = None, sampling: str = "logit_normal",
                      mean: float = 0.0, std: float = 1.0) -> torch.Tensor:
    r"""n training times (n,) in [0, 1]: "uniform", or "logit_normal" (Esser et al. 2024, eq. 19), which puts more
    of them in the middle of the path, where the velocity is hardest to predict; mean and std are of logit(t)."""
    if sampling == "uniform":
        return torch.rand(n, generator=generator)
    if sampling == "logit_normal":
        # $t = \mathrm{sigmoid}(n), \quad n \sim \mathcal N(m, s^2)$
        return torch.sigmoid(mean + std * torch.randn(n, generator=generator))
    raise ValueError(f"unknown time sampling {sampling!r}; choose one of {TIME_SAMPLINGS}")


def x0_and_eps_from_velocity(x_t: torch.Tensor, velocity: torch.Tensor,
                             t: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Read a velocity at (x_t, t) as the (x0, eps) pair it implies: the two lines x_t = (1 - t) x0 + t eps and
    u = eps - x0, solved for x0 and eps. Both hold at every t, t = 0 and t = 1 included."""
    t = as_column(t, x_t)
    # $\hat x_0 = x_t - t\, u, \quad \hat\epsilon = x_t + (1 - t)\, u$
    return x_t - t * velocity, x_t + (1 - t) * velocity


def velocity_from_x0(x_t: torch.Tensor, x0: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    r"""The velocity that points from x0 through x_t (t > 0): what a predicted clean image implies."""
    t = as_column(t, x_t)
    # $u = \epsilon - x_0 = (x_t - x_0) / t$
    return (x_t - x0) / t


def velocity_from_eps(x_t: torch.Tensor, eps: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    r"""The velocity that a noise estimate implies at x_t (t < 1; at t = 1, x_t is the noise and says nothing)."""
    t = as_column(t, x_t)
    # $u = \epsilon - x_0 = (\epsilon - x_t) / (1 - t)$
    return (eps - x_t) / (1 - t)


def eps_on_path(x_t: torch.Tensor, x0: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    r"""The noise that puts x_t on the straight path from x0 (t > 0)."""
    t = as_column(t, x_t)
    # $\epsilon = (x_t - (1 - t)\, x_0) / t$
    return (x_t - (1 - t) * x0) / t


def flow_time(alpha_bar: float) -> float:
    r"""The bridge: the flow time whose x_t holds x0 and eps in the ratio sqrt(alpha_bar) : sqrt(1 - alpha_bar)."""
    a, s = math.sqrt(alpha_bar), math.sqrt(1.0 - alpha_bar)
    # $t = \sqrt{1 - \bar\alpha} / (\sqrt{\bar\alpha} + \sqrt{1 - \bar\alpha})$
    return s / (a + s)


def alpha_bar_of_flow_time(t: float) -> float:
    r"""The inverse of `flow_time`: the VP noise level of flow time t; 1 at t = 0, 0 at t = 1."""
    # $\bar\alpha = (1 - t)^2 / ((1 - t)^2 + t^2)$
    return (1.0 - t) ** 2 / ((1.0 - t) ** 2 + t**2)


def flow_from_vp(x_vp: torch.Tensor, alpha_bar: float) -> tuple[torch.Tensor, float]:
    r"""A VP x_t (sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps) as the point of the straight path it is: (x_t, t)."""
    a, s = math.sqrt(alpha_bar), math.sqrt(1.0 - alpha_bar)
    # $x^{\mathrm{flow}}_t = x^{\mathrm{VP}}_t / (\sqrt{\bar\alpha} + \sqrt{1 - \bar\alpha})$
    return x_vp / (a + s), flow_time(alpha_bar)


def vp_from_flow(x_t: torch.Tensor, t: float) -> tuple[torch.Tensor, float]:
    r"""The inverse of `flow_from_vp`: the straight path's x_t at time t as a VP x_t, and its alpha_bar."""
    alpha_bar = alpha_bar_of_flow_time(t)
    # $x^{\mathrm{VP}}_t = x^{\mathrm{flow}}_t \cdot (\sqrt{\bar\alpha} + \sqrt{1 - \bar\alpha})$
    return x_t * (math.sqrt(alpha_bar) + math.sqrt(1.0 - alpha_bar)), alpha_bar


def flow_euler_step(x_t: torch.Tensor, velocity: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    r"""One step of Euler's method for dx/dt = u(x, t), from t to t_next < t (Liu et al. 2023, sec. 2). With the
    velocity of the midpoint instead, this is the explicit midpoint method's step."""
    # $x_{t'} = x_t + (t' - t)\, u$
    return x_t + (t_next - t) * velocity


def flow_heun_step(x_t: torch.Tensor, velocity: torch.Tensor, velocity_next: torch.Tensor, t: float,
                   t_next: float) -> torch.Tensor:
    r"""Heun's step (the trapezoid): from x_t along the average of the velocities at both ends of an Euler step."""
    # $x_{t'} = x_t + (t' - t)\, \tfrac12 (u(x_t, t) + u(\tilde x_{t'}, t'))$, $\tilde x_{t'}$ the Euler step
    return x_t + (t_next - t) * 0.5 * (velocity + velocity_next)


def straightness(states: list[torch.Tensor], times: list[float]) -> torch.Tensor:
    r"""How far trajectories are from straight lines walked at constant speed (Liu et al. 2023, sec. 2.2), per sample.

    states: the points x_{t_k} (B, ...) of a trajectory at `times` t_k (ordered either way). The time-average of
    the squared gap between each segment's velocity and the velocity of the whole straight line, averaged over the
    entries of x: (B,), 0 for a straight path walked at constant speed, larger the more it bends.
    """
    if len(states) != len(times) or len(states) < 2:
        raise ValueError(f"give at least two states and one time per state, got {len(states)} and {len(times)}")
    whole = (states[-1] - states[0]) / (times[-1] - times[0])  # the straight line's velocity (B, ...)
    total = torch.zeros(len(states[0]), dtype=states[0].dtype, device=states[0].device)
    for k in range(len(states) - 1):
        dt = times[k + 1] - times[k]
        segment = (states[k + 1] - states[k]) / dt  # (B, ...)
        # $\frac{1}{|t_{(K)} - t_{(0)}|} \sum_k |\Delta t_{(k)}|\, \overline{\lVert \frac{x_{(K)} - x_{(0)}}{t_{(K)} - t_{(0)}}
        #   - \frac{\Delta x_{(k)}}{\Delta t_{(k)}} \rVert^2}$, with $x_{(k)}$ the k-th state (not the image $x_0$)
        total += abs(dt) * (segment - whole).pow(2).flatten(1).mean(dim=1)  # (B, ...) -> (B,)
    return total / abs(times[-1] - times[0])
