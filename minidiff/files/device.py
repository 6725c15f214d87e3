"""Which device to compute on: `resolve_device("auto")` picks CUDA, then Apple's MPS, then the CPU; and its name,
for the records a benchmark keeps (`device_description`)."""

import platform
from pathlib import Path

import torch


def resolve_device(name: torch.device | str = "auto") -> torch.device:
    """"auto" -> cuda if available, else mps if available, else cpu; any other name is used as given.

    Raises ValueError for a name torch does not know, or for cuda/mps on a machine that has neither.
    """
    if str(name) != "auto":
        try:
            device = torch.device(name)
        except (RuntimeError, TypeError):
            raise ValueError(f"unknown device {str(name)!r}; give auto, cpu, cuda (cuda:N) or mps") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {str(name)!r} asked for, but this torch sees no CUDA GPU; use cpu or auto")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"device {str(name)!r} asked for, but this machine has no MPS (Apple GPU); use cpu or auto")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def device_description(device: torch.device | str, cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The GPU's name for a CUDA device; for the CPU its model name as Linux reports it in `cpuinfo` (e.g. "Intel(R)
    Xeon(R) Processor"), else what `platform` knows (on Linux only the architecture, "x86_64")."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple GPU (MPS)"
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "cpu"
