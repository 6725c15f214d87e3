"""The forward process q and the conversions between what a network can predict: eps, x0 and v.

Papers followed:
- Ho, Jain & Abbeel 2020 (DDPM): q(x_t | x_{t-1}) eq. (2), q(x_t | x0) eq. (4), posterior eq. (6)-(7),
  x0 from eps eq. (15).
- Salimans & Ho 2022, "Progressive Distillation for Fast Sampling of Diffusion Models": v-prediction, sec. 4.

Convention: t is 0-based (t = 0 is one step of noise). `t` may be an int or a LongTensor of shape (B,).
Functions that take `alpha_bar` accept a float, a (B,) tensor, or anything broadcastable to x.

Precision: every coefficient (sqrt(alpha_bar), sqrt(1 - alpha_bar), ...) is computed in float64 and cast to the
data's dtype only where it multiplies the data (`expand_like`); the result has the data's dtype, whatever it is
(float16, bfloat16, float32 or float64).
"""

import torch

from minidiff.diffusion.arguments import image_batch, whole_number
from minidiff.diffusion.schedule import NoiseSchedule


def float64(a: torch.Tensor | float) -> torch.Tensor:
    """A coefficient as a float64 tensor, the precision every coefficient is computed in, whatever the data's dtype.

    A tensor on a device without float64 (Apple's MPS) comes to the CPU first."""
    if not torch.is_tensor(a):
        return torch.as_tensor(a, dtype=torch.float64)  # a Python float is a float64 already
    if a.device.type == "mps":
        a = a.cpu()
    return a.to(torch.float64)


def expand_like(a: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """Where a coefficient meets the data: a value computed in float64, per sample (B,) or a scalar, cast to x's dtype
    and device and shaped to broadcast against x (B, ...).

    Cast last, after every sqrt and difference: $1 - \bar\alpha_t$ at $\bar\alpha_t = 0.9999$ is 1e-4 in float64,
    but 0 once $\bar\alpha_t$ is rounded to float16 or bfloat16. Cast on the CPU first, so that devices without
    float64 (MPS) only ever see x's dtype.
    """
    a = float64(a).to(x.dtype).to(x.device)
    if a.ndim == 1:
        a = a.reshape(-1, *([1] * (x.ndim - 1)))  # (B,) -> (B, 1, ..., 1)
    return a


def gather(table: torch.Tensor, t: int | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Read `table[t]` for each sample, in float64 on the CPU, shaped to broadcast against x.

    The values stay float64: compute with them, then cast where they meet x (`expand_like`). Raises TypeError for
    a t that is not a whole number (an int, or an integer tensor () or (B,)), ValueError for a t outside
    0 ... T-1 or a (B,) t whose B differs from x's batch.
    """
    image_batch("x", x, ndim=None)
    if not isinstance(t, torch.Tensor):
        t = whole_number("t", t, 0, len(table) - 1, what="a 0-based timestep")
        return float64(table[t])
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.ndim > 1:
        raise TypeError(f"t must be an int or an integer tensor () or (B,) of timesteps, got {t.dtype} "
                        f"{tuple(t.shape)}")
    if bool(((t < 0) | (t >= len(table))).any()):
        raise ValueError(f"every t must lie in 0 ... {len(table) - 1}, got {t.tolist()}")
    if t.ndim == 1 and len(t) != len(x):
        raise ValueError(f"t has {len(t)} entries but x has a batch of {len(x)}")
    values = float64(table[t.cpu()])  # index on the CPU; only the picked values travel, once cast
    if values.ndim == 1:
        values = values.reshape(-1, *([1] * (x.ndim - 1)))  # (B,) -> (B, 1, ..., 1)
    return values


def same_shape(name: str, value: torch.Tensor, like_name: str, like: torch.Tensor) -> torch.Tensor:
    """`value` must be a float tensor shaped like `like`, or broadcastable against it (e.g. the noise eps and the
    image x0)."""
    image_batch(name, value, ndim=None)
    try:
        torch.broadcast_shapes(value.shape, like.shape)
    except RuntimeError:
        raise ValueError(f"{name} must have the shape of {like_name}, {tuple(like.shape)}, got "
                         f"{tuple(value.shape)}") from None
    return value


def schedule_tables(schedule: NoiseSchedule) -> NoiseSchedule:
    """The schedule whose tables q reads; anything else is a TypeError that says how to make one."""
    if not isinstance(schedule, NoiseSchedule):
        raise TypeError(f"schedule must be a NoiseSchedule (e.g. make_schedule('cosine', 1000)), got "
                        f"{type(schedule).__name__}")
    return schedule


def q_sample(schedule: NoiseSchedule, x0: torch.Tensor, t: int | torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Draw x_t ~ q(x_t | x0) in one shot, given the noise eps (Ho et al. 2020, eq. 4)."""
    alpha_bar = gather(schedule_tables(schedule).alpha_bar, t, image_batch("x0", x0, ndim=None))  # float64
    same_shape("eps", eps, "x0", x0)
    # $x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \epsilon$
    return expand_like(alpha_bar.sqrt(), x0) * x0 + expand_like((1 - alpha_bar).sqrt(), x0) * eps


def q_step(schedule: NoiseSchedule, x_prev: torch.Tensor, t: int | torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Take one forward step x_{t-1} -> x_t ~ q(x_t | x_{t-1}) with noise eps (Ho et al. 2020, eq. 2).

    For t = 0, x_prev is the clean image x0.
    """
    beta = gather(schedule_tables(schedule).betas, t, image_batch("x_prev", x_prev, ndim=None))  # float64
    same_shape("eps", eps, "x_prev", x_prev)
    # $x_t = \sqrt{1 - \beta_t}\, x_{t-1} + \sqrt{\beta_t}\, \epsilon$
    return expand_like((1 - beta).sqrt(), x_prev) * x_prev + expand_like(beta.sqrt(), x_prev) * eps


def q_posterior(schedule: NoiseSchedule, x0: torch.Tensor, x_t: torch.Tensor, t: int | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of q(x_{t-1} | x_t, x0), the step the reverse process imitates (Ho et al. 2020, eq. 6-7)."""
    same_shape("x0", x0, "x_t", image_batch("x_t", x_t, ndim=None))
    coef_x0 = expand_like(gather(schedule_tables(schedule).posterior_coef_x0, t, x_t), x_t)
    coef_xt = expand_like(gather(schedule.posterior_coef_xt, t, x_t), x_t)
    # $\tilde\mu_t(x_t, x_0) = \frac{\sqrt{\bar\alpha_{t-1}}\beta_t}{1-\bar\alpha_t} x_0 + \frac{\sqrt{\alpha_t}(1-\bar\alpha_{t-1})}{1-\bar\alpha_t} x_t$
    mean = coef_x0 * x0 + coef_xt * x_t
    variance = expand_like(gather(schedule.posterior_variance, t, x_t), x_t)
    return mean, variance


def x0_from_eps(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar) -> torch.Tensor:
    """Recover x0 from x_t and the noise in it (Ho et al. 2020, eq. 15, solved for x0)."""
    alpha_bar = float64(alpha_bar)
    # $\hat x_0 = (x_t - \sqrt{1 - \bar\alpha_t}\, \epsilon) / \sqrt{\bar\alpha_t}$
    return (x_t - expand_like((1 - alpha_bar).sqrt(), x_t) * eps) / expand_like(alpha_bar.sqrt(), x_t)


def eps_from_x0(x_t: torch.Tensor, x0: torch.Tensor, alpha_bar) -> torch.Tensor:
    """Recover the noise in x_t from x0 (eq. 4 of Ho et al. 2020, solved for eps)."""
    alpha_bar = float64(alpha_bar)
    # $\epsilon = (x_t - \sqrt{\bar\alpha_t}\, x_0) / \sqrt{1 - \bar\alpha_t}$
    return (x_t - expand_like(alpha_bar.sqrt(), x_t) * x0) / expand_like((1 - alpha_bar).sqrt(), x_t)


def v_from_x0_eps(x0: torch.Tensor, eps: torch.Tensor, alpha_bar) -> torch.Tensor:
    """The velocity target v (Salimans & Ho 2022, sec. 4)."""
    alpha_bar = float64(alpha_bar)
    # $v = \sqrt{\bar\alpha_t}\, \epsilon - \sqrt{1 - \bar\alpha_t}\, x_0$
    return expand_like(alpha_bar.sqrt(), x0) * eps - expand_like((1 - alpha_bar).sqrt(), x0) * x0


def x0_from_v(x_t: torch.Tensor, v: torch.Tensor, alpha_bar) -> torch.Tensor:
    """Recover x0 from x_t and a v prediction (Salimans & Ho 2022, sec. 4)."""
    alpha_bar = float64(alpha_bar)
    # $\hat x_0 = \sqrt{\bar\alpha_t}\, x_t - \sqrt{1 - \bar\alpha_t}\, v$
    return expand_like(alpha_bar.sqrt(), x_t) * x_t - expand_like((1 - alpha_bar).sqrt(), x_t) * v


def eps_from_v(x_t: torch.Tensor, v: torch.Tensor, alpha_bar) -> torch.Tensor:
    """Recover eps from x_t and a v prediction (Salimans & Ho 2022, sec. 4)."""
    alpha_bar = float64(alpha_bar)
    # $\hat\epsilon = \sqrt{1 - \bar\alpha_t}\, x_t + \sqrt{\bar\alpha_t}\, v$
    return expand_like((1 - alpha_bar).sqrt(), x_t) * x_t + expand_like(alpha_bar.sqrt(), x_t) * v


PREDICTIONS = ("eps", "x0", "v")


def training_target(prediction: str, x0: torch.Tensor, eps: torch.Tensor, alpha_bar) -> torch.Tensor:
    """What the network is trained to output for a noised x0: the noise, the clean image, or v."""
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return x0
    if prediction == "v":
        return v_from_x0_eps(x0, eps, alpha_bar)
    raise ValueError(f"unknown prediction target {prediction!r}; choose one of {PREDICTIONS}")


def x0_and_eps_from_output(prediction: str, output: torch.Tensor, x_t: torch.Tensor, alpha_bar) -> tuple[torch.Tensor, torch.Tensor]:
    """Read a network's output as both (x0, eps), whichever of eps, x0 or v it was trained to predict.

    Samplers work with x0 and eps; this is the one place that knows how to get them from each target.
    """
    if prediction == "eps":
        return x0_from_eps(x_t, output, alpha_bar), output
    if prediction == "x0":
        return output, eps_from_x0(x_t, output, alpha_bar)
    if prediction == "v":
        return x0_from_v(x_t, output, alpha_bar), eps_from_v(x_t, output, alpha_bar)
    raise ValueError(f"unknown prediction target {prediction!r}; choose one of {PREDICTIONS}")
