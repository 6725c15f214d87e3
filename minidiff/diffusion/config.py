"""The diffusion settings of a model, in one place: which noise schedule, how many steps, and what the network predicts.

A network (minidiff.nets) knows nothing of diffusion: the same U-Net can be trained to predict eps, x0 or v. These
settings belong to the model as a whole, so a training run (`minidiff.training.config.TrainConfig.diffusion`) and a
checkpoint (`minidiff.models.CheckpointInfo.diffusion`) each store them once, as this dataclass.

Papers: Ho et al. 2020 (eps, T = 1000); Nichol & Dhariwal 2021 (cosine schedule); Salimans & Ho 2022 (v);
Lin et al. 2023 (zero terminal SNR).
"""

from dataclasses import asdict, dataclass, fields

from minidiff.diffusion.forward import PREDICTIONS
from minidiff.diffusion.schedule import SCHEDULES, NoiseSchedule, make_schedule


@dataclass
class DiffusionConfig:
    """What the forward process is and what the network is trained to output."""

    schedule: str = "cosine"  # Nichol & Dhariwal 2021: better than linear for small images and few sampling steps
    T: int = 1000  # diffusion steps, as in DDPM
    zero_terminal_snr: bool = False  # Lin et al. 2023: the last step is pure noise; needs prediction "v" or "x0"
    prediction: str = "eps"  # the network's target: "eps" (DDPM), "x0" or "v" (Salimans & Ho 2022)

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose one of {SCHEDULES}")
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction {self.prediction!r}; choose one of {PREDICTIONS}")
        if isinstance(self.T, bool) or not isinstance(self.T, int) or self.T < 1:
            raise ValueError(f"T, the number of diffusion steps, must be a whole number >= 1, got {self.T!r}")

    def noise_schedule(self) -> NoiseSchedule:
        """The schedule's tables for these settings."""
        return make_schedule(self.schedule, self.T, zero_terminal_snr=self.zero_terminal_snr)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DiffusionConfig":
        known = {f.name for f in fields(cls)}
        if set(d) - known:
            raise ValueError(f"unknown DiffusionConfig fields {sorted(set(d) - known)}; known: {sorted(known)}")
        return cls(**d)
