"""The diffusion settings of a model, in one place: which noise schedule, how many steps, and what the network predicts.

A network (minidiff.nets) knows nothing of diffusion: the same U-Net can be trained to predict eps, x0 or v. These
settings belong to the model as a whole, so a training run (`minidiff.training.config.TrainConfig.diffusion`) and a
checkpoint (`minidiff.models.CheckpointInfo.diffusion`) each store them once, as this dataclass.

A rectified-flow model (prediction "flow") is trained on the straight path x_t = (1 - t) x0 + t eps instead of a
noise schedule (`minidiff.diffusion.flow`): it has no schedule, and `time_sampling` says how its training draws t.

Papers: Ho et al. 2020 (eps, T = 1000); Nichol & Dhariwal 2021 (cosine schedule); Salimans & Ho 2022 (v);
Lin et al. 2023 (zero terminal SNR); Liu et al. 2023 and Lipman et al. 2023 (flow); Esser et al. 2024 (logit-normal t).
"""

from dataclasses import asdict, dataclass, fields

from minidiff.diffusion.arguments import flag, one_of, whole_number
from minidiff.diffusion.flow import FLOW, TIME_SAMPLINGS
from minidiff.diffusion.forward import PREDICTIONS
from minidiff.diffusion.schedule import SCHEDULES, NoiseSchedule, make_schedule


@dataclass
class DiffusionConfig:
    """What the forward process is and what the network is trained to output."""

    schedule: str = "cosine"  # Nichol & Dhariwal 2021: better than linear for small images and few sampling steps
    T: int = 1000  # diffusion steps, as in DDPM
    zero_terminal_snr: bool = False  # Lin et al. 2023: the last step is pure noise; needs prediction "v" or "x0"
    # the network's target: "eps" (DDPM), "x0" or "v" (Salimans & Ho 2022), or "flow": the straight path's velocity
    prediction: str = "eps"
    time_sampling: str | None = None  # flow only: how training draws t, "logit_normal" (the default, SD3) or "uniform"

    def __post_init__(self):
        one_of("schedule", self.schedule, SCHEDULES)
        one_of("prediction", self.prediction, PREDICTIONS + (FLOW,))
        whole_number("T", self.T, 1, what="the number of diffusion steps")
        flag("zero_terminal_snr", self.zero_terminal_snr)
        if self.zero_terminal_snr and self.prediction == "eps":
            # Lin et al. 2023, sec. 3.2: at SNR 0, x_T holds no trace of x0, so predicted noise says nothing about it
            raise ValueError("zero_terminal_snr needs prediction 'v' or 'x0': at the last step x_T is pure noise, so "
                             "an eps prediction cannot recover x0 from it and no sampler can start there; "
                             "set prediction='v' (Lin et al. 2023)")
        if self.prediction == FLOW:
            self.check_flow()
        elif self.time_sampling is not None:
            raise ValueError(f"time_sampling is for prediction 'flow'; a {self.prediction!r} model draws its step "
                             "uniformly from 0 ... T-1, so leave time_sampling out (None)")

    def check_flow(self) -> None:
        """A rectified-flow model's settings: its t is drawn as time_sampling says; it has no zero-SNR rescale."""
        if self.time_sampling is None:
            self.time_sampling = "logit_normal"
        if self.time_sampling not in TIME_SAMPLINGS:
            raise ValueError(f"unknown time_sampling {self.time_sampling!r}; choose one of {TIME_SAMPLINGS}")
        if self.zero_terminal_snr:
            raise ValueError("zero_terminal_snr rescales a VP schedule; the straight path of prediction 'flow' is "
                             "pure noise at t = 1 already, so leave zero_terminal_snr False")

    def noise_schedule(self) -> NoiseSchedule | None:
        """The schedule's tables for these settings; None for a rectified-flow model, which has no schedule."""
        if self.prediction == FLOW:
            return None
        return make_schedule(self.schedule, self.T, zero_terminal_snr=self.zero_terminal_snr)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DiffusionConfig":
        known = {f.name for f in fields(cls)}
        if set(d) - known:
            raise ValueError(f"unknown DiffusionConfig fields {sorted(set(d) - known)}; known: {sorted(known)}")
        return cls(**d)
