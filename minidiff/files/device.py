"""Which device to compute on: `resolve_device("auto")` picks CUDA, then Apple's MPS, then the CPU."""

import torch


def resolve_device(name: torch.device | str = "auto") -> torch.device:
    """"auto" -> cuda if available, else mps if available, else cpu; any other name is used as given."""
    if str(name) != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
