"""What a training run is set up with. `LoopConfig`: the settings every run shares, whatever it trains (batch,
optimizer, learning-rate schedule, budget, checkpoints, seed), read by the one training loop
(`minidiff.training.run.train_loop`). `TrainConfig`: a diffusion model's run (network, diffusion settings, data,
conditioning). `VAETrainConfig`: the autoencoder's run (`minidiff.training.vae`). The named presets of both are
`minidiff.training.presets`; the data a diffusion run reads, `minidiff.training.data`.
"""

from dataclasses import asdict, dataclass, field, fields
from os import PathLike

from minidiff.diffusion.arguments import flag, one_of, real_number, whole_number
from minidiff.diffusion.config import DiffusionConfig
from minidiff.nets.autoencoder import AutoencoderConfig
from minidiff.nets.conditioning import EncoderConfig
from minidiff.nets.dit import DiTConfig
from minidiff.nets.unet import UNetConfig

DATASETS = ("mnist5k", "shapes", "shapes_latents", "emoji_latents")  # digits, Shapes (pixels, latents), emoji latents
LATENT_DATASETS = ("shapes_latents", "emoji_latents")  # encoded once by the run's autoencoder (minidiff.training.data)
VAE_DATASETS = ("shapes", "emoji")  # what an autoencoder trains on
BUDGET_FIELDS = ("steps", "minutes", "checkpoint_every_steps", "checkpoint_every_minutes", "sample_every_steps",
                 "keep_models_at_steps")
# how a step is computed, not what: a resumed run may change them (precision changes the rounding, so a resume is
# exact only under the same precision)
EXECUTION_FIELDS = ("accumulate", "precision", "channels_last", "compile")
PRECISIONS = ("fp32", "bf16", "fp16")  # float32; bfloat16 autocast; float16 autocast with a gradient scaler


@dataclass
class LoopConfig:
    """The settings of the training loop itself. Every run's config extends it; stored in train_state.json."""

    batch_size: int = 128
    lr: float = 5e-4  # peak learning rate (AdamW, Loshchilov & Hutter 2019)
    weight_decay: float = 0.0  # DDPM uses none
    warmup_steps: int = 200  # linear warm-up of the learning rate (Goyal et al. 2017)
    decay_steps: int | None = None  # then a cosine decay to a tenth over this many steps; None = constant
    grad_clip: float = 1.0  # clip the gradient's global norm, as DDPM does
    steps: int | None = 5000  # stop after this many steps in all (None = no step limit)
    minutes: float | None = None  # stop after this many minutes in all, resumed sessions included (None = no limit)
    checkpoint_every_steps: int | None = None  # also checkpoint every N steps (None = only by minutes)
    checkpoint_every_minutes: float | None = 10.0  # checkpoint at least this often (and always at the end)
    seed: int = 0  # weights, batch order, noise and dropout all follow from it
    # how each step is computed (`minidiff.training.run`, `minidiff.training.distributed`): batch_size is the batch of
    # one optimizer step, split over the processes (torchrun) and, in each, over `accumulate` micro-batches
    accumulate: int = 1  # gradient accumulation: micro-batches per process and step
    precision: str = "fp32"  # see PRECISIONS; mixed precision (bf16, fp16) computes the network under autocast
    channels_last: bool = False  # keep the weights (and so the activations) in NHWC memory: faster convolutions on GPUs
    compile: bool = False  # torch.compile the network: slower to start, faster per step

    def __post_init__(self):
        """Refuse settings no run can use, naming the field (TypeError: wrong kind of value; ValueError: out of
        range)."""
        whole_number("batch_size", self.batch_size, 1, what="images per step")
        real_number("lr", self.lr, 0.0, low_open=True, what="the peak learning rate, e.g. 5e-4")
        real_number("weight_decay", self.weight_decay, 0.0)
        whole_number("warmup_steps", self.warmup_steps, 0)
        real_number("grad_clip", self.grad_clip, 0.0, low_open=True, what="the gradient's largest global norm")
        whole_number("seed", self.seed, 0)
        for name in ("decay_steps", "steps", "checkpoint_every_steps"):
            if getattr(self, name) is not None:
                whole_number(name, getattr(self, name), 1, what="None for none")
        for name in ("minutes", "checkpoint_every_minutes"):
            if getattr(self, name) is not None:
                real_number(name, getattr(self, name), 0.0, low_open=True, what="None for no limit")
        if self.steps is None and self.minutes is None:
            raise ValueError("give steps or minutes (or both): a run needs a stopping point")
        one_of("precision", self.precision, PRECISIONS)
        whole_number("accumulate", self.accumulate, 1, what="micro-batches per process and step")
        flag("channels_last", self.channels_last)
        flag("compile", self.compile)
        if self.batch_size % self.accumulate:
            raise ValueError(f"batch_size {self.batch_size} must be a multiple of accumulate {self.accumulate}: every "
                             "micro-batch has the same size, so that their mean loss is the batch's")

    def finished(self, step: int, minutes: float) -> bool:
        """Whether the run has reached its step or time budget."""
        return (self.steps is not None and step >= self.steps) or (self.minutes is not None and minutes >= self.minutes)

    def checkpoint_due(self, step: int, minutes_since_last: float) -> bool:
        """Whether to write a checkpoint now (besides the one at the end)."""
        by_steps = self.checkpoint_every_steps is not None and step % self.checkpoint_every_steps == 0
        by_time = self.checkpoint_every_minutes is not None and minutes_since_last >= self.checkpoint_every_minutes
        return by_steps or by_time

    def math_fields(self) -> list[str]:
        """The settings that change what is computed. The others (budget, checkpoint and grid intervals, and how
        a step is computed: EXECUTION_FIELDS) may change when a run is resumed."""
        return [f.name for f in fields(self) if f.name not in BUDGET_FIELDS + EXECUTION_FIELDS]

    def to_dict(self) -> dict:
        """A JSON-ready dict (nested configs as dicts)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields {sorted(unknown)}; known fields are {sorted(known)}")
        return cls(**d)


@dataclass
class TrainConfig(LoopConfig):
    """Every setting of a diffusion model's training run: the loop's (LoopConfig) and these."""

    # the network: a U-Net, or (unet None) a diffusion transformer; `network` is whichever is given
    unet: UNetConfig | None = field(default_factory=lambda: UNetConfig(num_classes=10))
    dit: DiTConfig | None = None
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)  # schedule, T, what the network predicts
    data: str = "mnist5k"  # the data set (see DATASETS)
    max_images: int | None = None  # MNIST-5k or emoji: N images spread evenly over the set (tests); None = all
    # latent diffusion (LATENT_DATASETS): which autoencoder, how many Shapes to render and encode once (emoji: all
    # of the train split, each image with its plain and its styled caption)
    autoencoder: str | None = None  # a shipped name ("shapes_vae") or a path; its scale factor comes with it
    dataset_size: int = 20000  # Shapes images of the "train" split, rendered from `seed`
    # token conditioning (cross-attention) instead of class labels: the encoder's settings, None = none
    encoder: EncoderConfig | None = None
    token_drop_prob: float = 0.0  # share of single words dropped (partial prompts); the whole condition: class_drop_prob
    ema_decay: float = 0.999  # short runs: the average spans ~1000 steps (DDPM: 0.9999 over 800k steps)
    min_snr_gamma: float | None = 5.0  # Hang et al. 2023's recommended gamma; None = plain, unweighted MSE
    class_drop_prob: float = 0.1  # share of labels (or token conditions) dropped to the null one, for guidance
    sample_every_steps: int | None = 500  # write a sample grid to samples/ every N steps (and at the end)
    sample_grid_steps: int = 100  # DDPM steps for those grids: evenly spaced, so they are quick
    keep_models_at_steps: tuple[int, ...] = ()  # also keep the EMA model at these steps (models/step_NNNNNN)

    def __post_init__(self):
        if isinstance(self.unet, dict):
            self.unet = UNetConfig.from_dict(self.unet)
        if isinstance(self.dit, dict):
            self.dit = DiTConfig.from_dict(self.dit)
        if (self.unet is None) == (self.dit is None):
            raise ValueError("give the network as exactly one of unet (a UNetConfig) and dit (a DiTConfig); "
                             "for a diffusion transformer set unet to None")
        if isinstance(self.diffusion, dict):
            self.diffusion = DiffusionConfig.from_dict(self.diffusion)
        if isinstance(self.encoder, dict):
            self.encoder = EncoderConfig(**self.encoder)
        super().__post_init__()
        self.check_parts()
        if self.data not in DATASETS:
            raise ValueError(f"unknown data set {self.data!r}; choose one of {DATASETS}")
        if self.data != "mnist5k" and self.encoder is None:
            raise ValueError(f"data {self.data!r} is conditioned on tokens: give an encoder (EncoderConfig)")
        if self.data in LATENT_DATASETS and self.autoencoder is None:
            raise ValueError(f"data {self.data!r} needs an autoencoder (e.g. 'shapes_vae') to encode the images")
        if self.data == "emoji_latents" and self.encoder.kind != "clip":
            raise ValueError("emoji captions are read by a CLIP's text tower: give an encoder of kind 'clip' "
                             "(minidiff.models.clip_encoder_config)")
        if self.max_images is not None and whole_number("max_images", self.max_images, 1) < self.batch_size:
            raise ValueError(f"batch_size must be at most the number of images (max_images = {self.max_images}), "
                             f"got {self.batch_size}")
        whole_number("dataset_size", self.dataset_size, 1, what="Shapes images to render")
        for name in ("token_drop_prob", "class_drop_prob", "ema_decay"):
            if not real_number(name, getattr(self, name), 0.0, 1.0) < 1.0:
                raise ValueError(f"{name} must be below 1 (1 would drop every condition or freeze the average), got 1")
        if self.min_snr_gamma is not None:
            real_number("min_snr_gamma", self.min_snr_gamma, 0.0, low_open=True, what="None for plain MSE")
        if self.sample_every_steps is not None:
            whole_number("sample_every_steps", self.sample_every_steps, 1, what="None for no grids")
        whole_number("sample_grid_steps", self.sample_grid_steps, 1, self.diffusion.T, what="DDPM steps of a grid")
        self.check_kept_steps()

    def check_kept_steps(self) -> None:
        """keep_models_at_steps: increasing whole numbers (a list from JSON becomes a tuple)."""
        if not isinstance(self.keep_models_at_steps, (list, tuple)):
            raise TypeError(f"keep_models_at_steps must be a tuple of steps, e.g. (250, 750), got "
                            f"{type(self.keep_models_at_steps).__name__}")
        self.keep_models_at_steps = tuple(self.keep_models_at_steps)
        for step in self.keep_models_at_steps:
            whole_number("keep_models_at_steps", step, 1, what="steps at which to keep the model")
        if list(self.keep_models_at_steps) != sorted(set(self.keep_models_at_steps)):
            raise ValueError(f"keep_models_at_steps must be increasing, got {self.keep_models_at_steps}")

    def check_parts(self) -> None:
        """The nested settings must be configs of the right kind (dicts from JSON are converted before this)."""
        network_kind = ("unet", UNetConfig) if self.dit is None else ("dit", DiTConfig)
        for name, kind in (network_kind, ("diffusion", DiffusionConfig)):
            if not isinstance(getattr(self, name), kind):
                raise TypeError(f"{name} must be a {kind.__name__} (or its dict), got "
                                f"{type(getattr(self, name)).__name__}")
        if self.encoder is not None and not isinstance(self.encoder, EncoderConfig):
            raise TypeError(f"encoder must be an EncoderConfig, its dict or None, got {type(self.encoder).__name__}")
        if isinstance(self.autoencoder, PathLike):
            self.autoencoder = str(self.autoencoder)  # stored in JSON
        if self.autoencoder is not None and not isinstance(self.autoencoder, str):
            raise TypeError(f"autoencoder must be a shipped name or a path as a string (e.g. 'shapes_vae'), got "
                            f"{type(self.autoencoder).__name__}")

    @property
    def network(self) -> UNetConfig | DiTConfig:
        """The config of the network this run trains, whichever backbone it is."""
        return self.unet if self.dit is None else self.dit

    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of what the network denoises: MNIST digits, or the 8 x 8 latents of 32 x 32 Shapes or emoji."""
        if self.data in LATENT_DATASETS:
            return (self.network.in_channels, 8, 8)  # the autoencoder downsamples 32 x 32 by 4
        if self.data == "shapes":
            return (3, 32, 32)
        return (1, 28, 28)


@dataclass
class VAETrainConfig(LoopConfig):
    """Every setting of an autoencoder's training run: the loop's (LoopConfig, with these defaults) and its own."""

    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    data: str = "shapes"  # VAE_DATASETS: Shapes (rendered once), or the emoji's train split (held out: test)
    dataset_size: int = 20000  # Shapes of the train split, rendered once (emoji: all of the split, this unused)
    eval_images: int = 500  # held-out images for the final PSNR
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 100
    decay_steps: int | None = 3000  # the learning rate decays (cosine) to a tenth over this many steps, then stays
    steps: int | None = None
    minutes: float | None = 25.0
    checkpoint_every_minutes: float | None = 5.0
    # fine-tune only the decoder of this autoencoder (shipped name or path): its encoder is copied and frozen, so
    # its latent space, and every latent model trained in it, stays valid; None: train both halves from scratch
    decoder_from: str | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.decoder_from is not None and (not isinstance(self.decoder_from, str) or not self.decoder_from):
            raise TypeError(f"decoder_from must be an autoencoder's shipped name or path (a str) or None, got "
                            f"{self.decoder_from!r}")
        if isinstance(self.autoencoder, dict):
            self.autoencoder = AutoencoderConfig.from_dict(self.autoencoder)
        if not isinstance(self.autoencoder, AutoencoderConfig):
            raise TypeError(f"autoencoder must be an AutoencoderConfig (or its dict), got "
                            f"{type(self.autoencoder).__name__}")
        one_of("data", self.data, VAE_DATASETS)
        whole_number("dataset_size", self.dataset_size, 1, what="Shapes images to render")
        whole_number("eval_images", self.eval_images, 1, what="held-out images for the PSNR")
