"""Saved networks: model and autoencoder checkpoints, what their JSON records, and the networks built from them.

A model checkpoint (`save_checkpoint`, `load_checkpoint`) is the weights a sampler uses and a `CheckpointInfo`: the
network's config and which backbone it configures (`BACKBONES`: a U-Net, or a diffusion transformer), the diffusion
settings (`minidiff.diffusion.config.DiffusionConfig`), the data it was trained on (for a latent model also its
autoencoder and scale factor), the command that trained it, seed, device, minutes, step, measured metrics
(`record_metrics`), and the token encoder's config for a model conditioned through cross-attention. `load_model`
builds the network the JSON describes (a `UNet` or `DiT`, or either inside a `ConditionedUNet`) and loads its
weights. An autoencoder checkpoint (`save_autoencoder`, `load_autoencoder`) holds the autoencoder of latent diffusion
with its scale factor and measured PSNR; `autoencoder_for` returns the one a latent model was trained with, checked
by its weights' sha256. A CLIP checkpoint (kind "clip", written by `minidiff.training.clip`) is read by `load_clip`;
a model conditioned on a frozen CLIP's text tower records which one (`clip_encoder_config`, `clip_text_tower`).

The shipped checkpoints live in data/checkpoints/ (`mnist` -> data/checkpoints/mnist.json + .safetensors). The file
format (safetensors beside JSON, sha256, atomic writes) is `minidiff.files.checkpoint`.
"""

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from minidiff.diffusion.config import DiffusionConfig
from minidiff.diffusion.schedule import NoiseSchedule
from minidiff.files.atomic import atomic_write_bytes
from minidiff.files.checkpoint import (
    CheckpointError,
    checkpoint_path,
    checkpoint_stem,
    read_tensors_and_json,
    write_tensors_and_json,
)
from minidiff.files.device import resolve_device
from minidiff.nets.autoencoder import Autoencoder, AutoencoderConfig
from minidiff.nets.clip import CLIP, CLIPConfig
from minidiff.nets.conditioning import ConditionedUNet, EncoderConfig
from minidiff.nets.dit import DiT, DiTConfig
from minidiff.nets.unet import UNet, UNetConfig

# the denoising networks a checkpoint may hold: its "backbone" -> (config class, network class)
BACKBONES = {"unet": (UNetConfig, UNet), "dit": (DiTConfig, DiT)}


@dataclass
class CheckpointInfo:
    """Everything about a model checkpoint except its weights; stored as STEM.json."""

    model: dict  # the network's config: UNetConfig.to_dict(), or DiTConfig.to_dict() when backbone is "dit"
    diffusion: dict  # DiffusionConfig.to_dict(): {"schedule": "cosine", "T": 1000, "zero_terminal_snr": False, "prediction": "eps"}
    data: dict  # {"name": "mnist5k", "image_shape": [C, H, W]}: what it was trained on, the shape it draws
    command: str  # the command(s) that trained it, one per line (a resumed run lists each invocation)
    seed: int
    device: str
    training_minutes: float
    step: int
    metrics: dict = field(default_factory=dict)  # filled by `record_metrics` (e.g. python -m minidiff evaluate)
    encoder: dict | None = None  # EncoderConfig.to_dict() of a token-conditioned model (ConditionedUNet), else None
    backbone: str = "unet"  # a key of BACKBONES; checkpoints written before there was a choice hold a U-Net

    def unet_config(self) -> UNetConfig:
        return UNetConfig.from_dict(self.model)

    def network_config(self) -> UNetConfig | DiTConfig:
        """The config of the checkpoint's network, of the class its backbone names."""
        if self.backbone not in BACKBONES:
            raise CheckpointError(f"unknown backbone {self.backbone!r} in the checkpoint; known: {sorted(BACKBONES)}")
        return BACKBONES[self.backbone][0].from_dict(self.model)

    def diffusion_config(self) -> DiffusionConfig:
        return DiffusionConfig.from_dict(self.diffusion)

    def noise_schedule(self) -> NoiseSchedule:
        return self.diffusion_config().noise_schedule()


def backbone_of(config: UNetConfig | DiTConfig) -> str:
    """The BACKBONES key of a network config: "unet" for a UNetConfig, "dit" for a DiTConfig."""
    for name, (config_class, _) in BACKBONES.items():
        if isinstance(config, config_class):
            return name
    raise TypeError(f"{type(config).__name__} is not a network config; give one of "
                    f"{[config_class.__name__ for config_class, _ in BACKBONES.values()]}")


def build_network(config: UNetConfig | DiTConfig, encoder: EncoderConfig | None = None
                  ) -> UNet | DiT | ConditionedUNet:
    """A freshly initialised network of the config's backbone, inside a ConditionedUNet with its token encoder when
    one is given."""
    if encoder is not None:
        return ConditionedUNet(config, encoder)
    return BACKBONES[backbone_of(config)][1](config)


def save_checkpoint(stem: Path | str, weights: dict[str, torch.Tensor], info: CheckpointInfo) -> None:
    """Write a model checkpoint: STEM.safetensors (the weights) and STEM.json (the info and the weights' sha256)."""
    write_tensors_and_json(stem, weights, {"kind": "model", **asdict(info)})


def load_checkpoint(name_or_path: Path | str) -> tuple[dict[str, torch.Tensor], CheckpointInfo]:
    """Read a model checkpoint by shipped name ("mnist") or path; returns (weights, info)."""
    stem = checkpoint_stem(name_or_path)
    weights, meta = read_tensors_and_json(stem)
    optional = ("metrics", "encoder", "backbone")  # older checkpoints may lack these
    missing = [name for name in CheckpointInfo.__dataclass_fields__ if name not in meta and name not in optional]
    if meta.get("kind") != "model" or missing:
        raise CheckpointError(f"{stem}.json is not a minidiff diffusion model checkpoint (kind = {meta.get('kind')!r}, "
                              f"missing entries: {missing}); give the path of a model checkpoint")
    return weights, CheckpointInfo(**{name: meta[name] for name in CheckpointInfo.__dataclass_fields__ if name in meta})


def record_metrics(name_or_path: Path | str, metrics: dict) -> CheckpointInfo:
    """Add measured metrics (e.g. {"fid": 7.1}) to a checkpoint's JSON; the weights file is not touched."""
    stem = checkpoint_stem(name_or_path)
    load_checkpoint(stem)  # refuse to annotate a damaged or mismatched pair
    meta = json.loads(Path(f"{stem}.json").read_text())
    meta["metrics"] = {**meta["metrics"], **metrics}
    atomic_write_bytes(f"{stem}.json", (json.dumps(meta, indent=2) + "\n").encode())
    return load_checkpoint(stem)[1]


def load_model(name_or_path: Path | str, device: torch.device | str = "cpu"
               ) -> tuple[UNet | DiT | ConditionedUNet, CheckpointInfo]:
    """Build the model a checkpoint describes (a U-Net or a DiT, alone or with its token encoder), load its weights,
    and return it in eval mode on `device`."""
    weights, info = load_checkpoint(name_or_path)
    encoder = None if info.encoder is None else EncoderConfig(**info.encoder)
    model = build_network(info.network_config(), encoder)
    model.load_state_dict(weights)
    return model.to(resolve_device(device)).eval(), info


@dataclass
class AutoencoderInfo:
    """Everything about an autoencoder checkpoint except its weights (STEM.json, kind "autoencoder")."""

    config: dict  # AutoencoderConfig.to_dict()
    scale_factor: float  # 1 / std of the encoder's means on training data (see estimate_scale_factor)
    command: str  # the command(s) that trained it
    seed: int
    device: str
    training_minutes: float
    step: int
    data: dict  # what it was trained on, e.g. {"name": "shapes", "split": "train", "n": 20000, "seed": 0}
    metrics: dict  # measured, e.g. PSNR on the held-out split
    tensors_sha256: str = ""  # filled on load: identifies these weights (latent caches and latent models use it)
    encoder_of: str = ""  # a decoder fine-tuned alone: the tensors_sha256 of the autoencoder whose encoder it keeps

    @property
    def latent_space(self) -> str:
        """Identifies the latent space, which only the encoder makes: the sha256 of the autoencoder whose encoder
        this one carries unchanged (encoder_of), or its own weights' sha256."""
        return self.encoder_of or self.tensors_sha256


def save_autoencoder(stem: Path | str, autoencoder: Autoencoder, info: AutoencoderInfo) -> None:
    """Write STEM.safetensors (weights) and STEM.json (info), each atomically."""
    meta = {name: value for name, value in asdict(info).items() if name != "tensors_sha256"}
    write_tensors_and_json(stem, autoencoder.state_dict(), {"kind": "autoencoder", **meta})


def load_autoencoder(name_or_path: Path | str = "shapes_vae",
                     device: torch.device | str = "cpu") -> tuple[Autoencoder, AutoencoderInfo]:
    """An autoencoder checkpoint by shipped name ("shapes_vae"), run folder or path, in eval mode, and its info."""
    path = checkpoint_path(name_or_path)
    stem = path / "autoencoder" if path.is_dir() else checkpoint_stem(path)  # a train-vae run folder, or a stem
    weights, meta = read_tensors_and_json(stem)
    if meta.get("kind") != "autoencoder":
        raise CheckpointError(f"{stem}.json is not an autoencoder checkpoint (kind = {meta.get('kind')!r}); "
                              "give the path of one, e.g. 'shapes_vae'")
    names = [f.name for f in fields(AutoencoderInfo)]
    info = AutoencoderInfo(**{name: meta[name] for name in names if name in meta})
    autoencoder = Autoencoder(AutoencoderConfig.from_dict(info.config))
    try:
        autoencoder.load_state_dict(weights)
    except RuntimeError as error:  # missing, unexpected or wrongly shaped weights
        raise CheckpointError(f"{stem}.safetensors does not fit the config in {stem}.json ({error}); the two files "
                              "come from different autoencoders: save them together with save_autoencoder") from None
    return autoencoder.to(resolve_device(device)).eval(), info


def autoencoder_for(info: CheckpointInfo, device: torch.device | str = "cpu") -> tuple[Autoencoder, float]:
    """The autoencoder a latent model was trained with, and its scale factor; an error if its weights changed.

    Its decoder alone may have been fine-tuned since (`encoder_of`, `python -m minidiff train-vae --decoder-from`):
    the encoder, so the latent space the model learned, is the same, as with Stable Diffusion's fine-tuned decoders."""
    autoencoder, autoencoder_info = load_autoencoder(info.data["autoencoder"], device)
    recorded = info.data["autoencoder_sha256"]
    if recorded not in (autoencoder_info.tensors_sha256, autoencoder_info.encoder_of):
        raise ValueError(f"the autoencoder {info.data['autoencoder']!r} is not the one this model was trained with "
                         "(neither its weights' sha256 nor its encoder's origin matches); restore that autoencoder or "
                         "retrain the latent model")
    return autoencoder, info.data["scale_factor"]


def latent_data_info(autoencoder_name: str) -> dict:
    """What a latent model's checkpoint records about its data: the autoencoder (name, weights' sha256) and the
    scale factor it was trained with, so sampling decodes with the same one."""
    _, info = load_autoencoder(autoencoder_name)
    return {"autoencoder": str(autoencoder_name), "autoencoder_sha256": info.tensors_sha256,
            "scale_factor": info.scale_factor}


def load_clip(name_or_path: Path | str, device: torch.device | str = "cpu") -> tuple[CLIP, dict]:
    """A CLIP checkpoint by shipped name ("emoji_clip"), train-clip run folder or path -> the network, in eval mode,
    and its JSON (config, tokenizer, command, metrics, tensors_sha256)."""
    path = checkpoint_path(name_or_path)  # a TypeError naming the argument for anything but a name or a path
    stem = path / "clip" if path.is_dir() else checkpoint_stem(path)  # a train-clip run folder, or a stem
    tensors, meta = read_tensors_and_json(stem)
    if meta.get("kind") != "clip":
        raise ValueError(f"{stem} is not a CLIP checkpoint (kind = {meta.get('kind')!r}); train one with "
                         "`python -m minidiff train-clip`")
    model = CLIP(CLIPConfig.from_dict(meta["config"]))
    model.load_state_dict(tensors)
    return model.to(resolve_device(device)).eval(), meta


def clip_tower_config(clip: CLIPConfig, name: str, sha256: str | None = None) -> EncoderConfig:
    """The config of a token encoder (kind "clip") that is the text tower of a CLIP shaped `clip`, whose checkpoint
    is `name` (and, once read, has weights of this sha256)."""
    return EncoderConfig(kind="clip", dim=clip.text_dim, length=clip.length, layers=clip.text_layers,
                         heads=clip.heads, vocabulary_size=clip.vocabulary_size, clip=name, clip_sha256=sha256)


def clip_encoder_config(name_or_path: Path | str) -> EncoderConfig:
    """The config of a token encoder that is this CLIP checkpoint's text tower (kind "clip"), its sha256 recorded."""
    clip, meta = load_clip(name_or_path)
    return clip_tower_config(clip.config, str(name_or_path), meta["tensors_sha256"])


def clip_text_tower(config: EncoderConfig) -> tuple[dict[str, torch.Tensor], str]:
    """The weights of the text tower that a kind "clip" encoder copies, and its checkpoint's sha256. An error if
    the checkpoint's shape is not the config's, or (when the config records one) its sha256 differs."""
    clip, meta = load_clip(config.clip)
    expected = clip_tower_config(clip.config, config.clip)
    shape = ("dim", "length", "layers", "heads", "vocabulary_size")
    if any(getattr(expected, name) != getattr(config, name) for name in shape):
        raise ValueError(f"the CLIP {config.clip!r} has a text tower of {[getattr(expected, n) for n in shape]} "
                         f"({', '.join(shape)}), the encoder config asks for {[getattr(config, n) for n in shape]}; "
                         "make the config with minidiff.models.clip_encoder_config")
    if config.clip_sha256 is not None and config.clip_sha256 != meta["tensors_sha256"]:
        raise ValueError(f"the CLIP {config.clip!r} is not the one this model was trained with (its weights' "
                         "sha256 differs); restore that CLIP")
    return clip.text_encoder.state_dict(), meta["tensors_sha256"]
