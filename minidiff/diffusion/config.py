"""The diffusion settings of a model, in one place: which noise schedule, how many steps, and what the network predicts.

A network (minidiff.nets) knows nothing of diffusion: the same U-Net can be trained to predict eps, x0 or v. These
settings belong to the model as a whole, so a training run (`minidiff.training.config.TrainConfig.diffusion`) and a
checkpoint (`minidiff.models.CheckpointInfo.diffusion`) each store them once, as this dataclass.

Papers: Ho et al. 2020 (eps, T = 1000); Nichol & Dhariwal 2021 (cosine schedule); Salimans & Ho 2022 (v);
Lin et al. 2023 (zero terminal SNR).
"""

from dataclasses import asdict, dataclass, fields

from minidiff.diffusion.arguments import flag, one_of, whole_number
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
        one_of("schedule", self.schedule, SCHEDULES)
        one_of("prediction", self.prediction, PREDICTIONS)
        whole_number("T", self.T, 1, what="the number of diffusion steps")
        flag("zero_terminal_snr", self.zero_terminal_snr)
        if self.zero_terminal_snr and self.prediction == "eps":
            # Lin et al. 2023, sec. 3.2: at SNR 0, x_T holds no trace of x0, so predicted noise says nothing about it
            raise ValueError("zero_terminal_snr needs prediction 'v' or 'x0': at the last step x_T is pure noise, so "
                             "an eps prediction cannot recover x0 from it and no sampler can start there; "
                             "set prediction='v' (Lin et al. 2023)")

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
