"""The checks every public entry point runs on what a caller passes: one function per kind of argument.

A mistake in an argument should stop a call at its door, with a message that names the argument and says what to
pass, not deep inside torch as an IndexError about a tensor the caller never made. Each function below checks one
kind of value (a whole number in a range, a real number in a range, one of a few names, a batch of images, a
shape, a generator, a device) and returns it in the form the code uses (an int, a float, a torch.device).
Wrong type: TypeError. Right type, wrong value: ValueError.

They live in the lowest layer that has entry points (`diffusion/`), so the samplers, the pipeline, the configs and
the commands all use the same ones.
"""

import math
from collections.abc import Callable, Sequence

import torch


def whole_number(name: str, value, low: int, high: int | None = None, what: str = "") -> int:
    """`value` as an int in low ... high (high None: no upper bound). A float, even 10.0, a bool or a string is a
    TypeError: a count of steps or images is written as a whole number."""
    bounds = f"in {low} ... {high}" if high is not None else f">= {low}"
    hint = f" ({what})" if what else ""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a whole number {bounds}{hint}, got the bool {value}")
    try:
        number = int(value.__index__())  # int, numpy integers, 0-d integer tensors; never a float
    except (AttributeError, TypeError, RuntimeError):
        raise TypeError(f"{name} must be a whole number {bounds}{hint}, got {value!r} "
                        f"({type(value).__name__})") from None
    if number < low or (high is not None and number > high):
        raise ValueError(f"{name} must be a whole number {bounds}{hint}, got {number}")
    return number


def real_number(name: str, value, low: float | None = None, high: float | None = None, what: str = "",
                low_open: bool = False) -> float:
    """`value` as a finite float in [low, high] ((low, high] with low_open); None for a bound: none that side.
    NaN, infinity, a bool, a string or a list is refused."""
    bounds = _range_words(low, high, low_open)
    hint = f" ({what})" if what else ""
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not _scalar_tensor(value):
        raise TypeError(f"{name} must be a number {bounds}{hint}, got {value!r} ({type(value).__name__})")
    number = float(value)
    too_low = low is not None and (number <= low if low_open else number < low)
    if not math.isfinite(number) or too_low or (high is not None and number > high):
        raise ValueError(f"{name} must be a number {bounds}{hint}, got {number}")
    return number


def _range_words(low: float | None, high: float | None, low_open: bool) -> str:
    """How a range reads in a message: "in [0.0, 1.0]", "in (0.0, 1.0]", ">= 0.0", "<= 1.0", "finite"."""
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}]"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    return f"<= {high}" if high is not None else "that is finite"


def _scalar_tensor(value) -> bool:
    """A 0-d real tensor or numpy scalar: it behaves like a number."""
    return hasattr(value, "shape") and tuple(value.shape) == () and hasattr(value, "dtype") and hasattr(value, "item")


def one_of(name: str, value, choices: Sequence[str]) -> str:
    """`value`, which must be one of the names in `choices`."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {tuple(choices)}")
    return value


def flag(name: str, value) -> bool:
    """A yes/no setting: True or False, nothing else (a string "False" would read as True)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return value


def sample_shape(name: str, shape) -> tuple[int, ...]:
    """The shape of a batch to draw, (B, C, H, W) or any (B, ...): a tuple of whole numbers >= 1."""
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence) or len(shape) == 0:
        raise TypeError(f"{name} must be a tuple of sizes like (B, C, H, W), got {shape!r}")
    return tuple(whole_number(f"{name}[{i}]", size, 1, what="a size in the shape (B, C, H, W)")
                 for i, size in enumerate(shape))


def image_batch(name: str, value, ndim: int | None = 4, layout: str = "(B, C, H, W)") -> torch.Tensor:
    """A float tensor of images (or latents) with `ndim` dimensions; a numpy array or integer pixels are refused
    (convert them with minidiff.data.pixels.to_model)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor {layout} of floats, got {type(value).__name__}; "
                        "convert uint8 pixels with minidiff.data.pixels.to_model")
    if not value.dtype.is_floating_point:
        raise TypeError(f"{name} must hold floats (e.g. in [-1, 1]), got dtype {value.dtype}; "
                        "convert uint8 pixels with minidiff.data.pixels.to_model")
    if ndim is not None and value.ndim != ndim:
        raise ValueError(f"{name} must be {layout}, got shape {tuple(value.shape)}")
    return value


def generator_or_none(name: str, value) -> torch.Generator | None:
    """A torch.Generator, or None for torch's global one."""
    if value is not None and not isinstance(value, torch.Generator):
        raise TypeError(f"{name} must be a torch.Generator (e.g. torch.Generator().manual_seed(0)) or None, "
                        f"got {type(value).__name__}")
    return value


def device_name(name: str, value) -> torch.device:
    """A torch device: a torch.device or a name torch knows ("cpu", "cuda", "cuda:1", "mps")."""
    if not isinstance(value, (str, torch.device)):
        raise TypeError(f"{name} must be a device name such as 'cpu', 'cuda' or 'mps', got {type(value).__name__}")
    try:
        return torch.device(value)
    except RuntimeError:
        raise ValueError(f"unknown {name} {value!r}; give cpu, cuda (cuda:N) or mps") from None


def same_batch(name: str, value, x: torch.Tensor) -> None:
    """A per-image condition (class labels, a text context) has one row per image of x (B, ...), or one for all."""
    if value is not None and len(value) not in (1, len(x)):
        raise ValueError(f"{name} has {len(value)} rows but the sampler draws a batch of {len(x)}: give one per "
                         "image, or one for all")


def function(name: str, value, what: str) -> Callable:
    """A callable: a denoiser, a callback."""
    if not callable(value):
        raise TypeError(f"{name} must be a function {what}, got {type(value).__name__}")
    return value
