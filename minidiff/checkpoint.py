"""Checkpoints: weights in safetensors, and a JSON file beside them that says how they were made. No pickle.

A checkpoint is two files with one stem: `STEM.safetensors` (the tensors) and `STEM.json` (everything else,
plus the sha256 of the tensors file). Two kinds are stored this way:

- a model checkpoint (`save_checkpoint`, `load_model`): the weights a sampler uses and a `CheckpointInfo`
  (model config, diffusion settings, the command that trained it, seed, device, minutes, step, metrics).
  The shipped ones live in data/checkpoints/ (`mnist` -> data/checkpoints/mnist.json + .safetensors).
- a training state (`save_training_state`, `load_training_state`): all a run needs to resume exactly
  (online and EMA weights, optimizer state, RNG states, data order, loss history). Sampling never needs it.

Every file is written atomically (a temp file in the same folder, then `os.replace`), tensors first, JSON last.
Loading checks the sha256, so the JSON of one checkpoint is never used with the tensors of another, and a
truncated or corrupt file is reported by name.
"""

import hashlib
import json
import os
import random
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import safetensors.torch
import torch

from minidiff.conditioning import ConditionedUNet, EncoderConfig
from minidiff.data import DATA_DIR
from minidiff.schedule import NoiseSchedule, make_schedule
from minidiff.unet import UNet, UNetConfig

CHECKPOINT_DIR = DATA_DIR / "checkpoints"
FORMAT = "minidiff-checkpoint-1"  # bumped if the layout of the files ever changes


class CheckpointError(RuntimeError):
    """A checkpoint file is truncated, corrupt, or does not belong with the file beside it."""


# ---------------------------------------------------------------------------------------------------------
# Two files, one checkpoint: tensors + JSON, written atomically, checked on load
# ---------------------------------------------------------------------------------------------------------

def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write `data` to `path` so a reader sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temp_name, 0o644)  # mkstemp makes files only their owner can read
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def write_tensors_and_json(stem: Path | str, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Write STEM.safetensors and STEM.json; the JSON records the tensors file's sha256."""
    tensors = {name: value.detach().cpu().contiguous().clone() for name, value in tensors.items()}
    data = safetensors.torch.save(tensors)
    meta = {"format": FORMAT, "tensors_sha256": hashlib.sha256(data).hexdigest(), **meta}
    atomic_write_bytes(f"{stem}.safetensors", data)
    atomic_write_bytes(f"{stem}.json", (json.dumps(meta, indent=2) + "\n").encode())


def read_tensors_and_json(stem: Path | str) -> tuple[dict[str, torch.Tensor], dict]:
    """Read what `write_tensors_and_json` wrote, raising a clear error if a file is missing or damaged."""
    json_path, tensors_path = Path(f"{stem}.json"), Path(f"{stem}.safetensors")
    advice = ("retrain it (the command is in the JSON), or re-clone the repository if it is a shipped "
              "checkpoint in data/checkpoints/")
    for path in (json_path, tensors_path):
        if not path.exists():
            raise FileNotFoundError(f"checkpoint file {path} is missing; {advice}")
    try:
        meta = json.loads(json_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{json_path} is not valid JSON (truncated or corrupt: {error}); {advice}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "tensors_sha256" not in meta:
        raise CheckpointError(f"{json_path} is not a {FORMAT} file (no format/sha256 entry); {advice}")
    data = tensors_path.read_bytes()
    if hashlib.sha256(data).hexdigest() != meta["tensors_sha256"]:
        raise CheckpointError(f"{tensors_path} does not match the sha256 recorded in {json_path}: it is truncated, "
                              f"corrupt, or belongs to another checkpoint; {advice}")
    return safetensors.torch.load(data), meta


def with_prefix(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """{"w": x} -> {"prefix.w": x}: several state dicts can then share one safetensors file."""
    return {f"{prefix}.{name}": value for name, value in tensors.items()}


def without_prefix(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of `with_prefix`: the entries under "prefix.", with the prefix removed."""
    start = f"{prefix}."
    return {name[len(start):]: value for name, value in tensors.items() if name.startswith(start)}


# ---------------------------------------------------------------------------------------------------------
# Model checkpoints: what sampling needs
# ---------------------------------------------------------------------------------------------------------

@dataclass
class CheckpointInfo:
    """Everything about a model checkpoint except its weights; stored as STEM.json."""

    model: dict  # UNetConfig.to_dict()
    diffusion: dict  # {"schedule": "linear", "T": 1000, "zero_terminal_snr": False, "prediction": "eps"}
    data: dict  # {"name": "mnist5k", "image_shape": [C, H, W]}: what it was trained on, the shape it draws
    command: str  # the command(s) that trained it, one per line (a resumed run lists each invocation)
    seed: int
    device: str
    training_minutes: float
    step: int
    metrics: dict = field(default_factory=dict)  # filled by evaluation code (e.g. minidiff.metrics)
    encoder: dict | None = None  # EncoderConfig.to_dict() of a token-conditioned model (ConditionedUNet), else None

    def unet_config(self) -> UNetConfig:
        return UNetConfig.from_dict(self.model)

    def noise_schedule(self) -> NoiseSchedule:
        d = self.diffusion
        return make_schedule(d["schedule"], d["T"], zero_terminal_snr=d["zero_terminal_snr"])


def save_checkpoint(stem: Path | str, weights: dict[str, torch.Tensor], info: CheckpointInfo) -> None:
    """Write a model checkpoint: STEM.safetensors (the weights) and STEM.json (the info and the weights' sha256)."""
    write_tensors_and_json(stem, weights, {"kind": "model", **asdict(info)})


def load_checkpoint(name_or_path: Path | str) -> tuple[dict[str, torch.Tensor], CheckpointInfo]:
    """Read a model checkpoint by shipped name ("mnist") or path; returns (weights, info)."""
    stem = checkpoint_stem(name_or_path)
    weights, meta = read_tensors_and_json(stem)
    optional = ("metrics", "encoder")  # older checkpoints may lack these
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
               ) -> tuple[UNet | ConditionedUNet, CheckpointInfo]:
    """Build the model a checkpoint describes (a U-Net, or a U-Net with its token encoder), load its weights, and
    return it in eval mode on `device`."""
    weights, info = load_checkpoint(name_or_path)
    if info.encoder is None:
        model = UNet(info.unet_config())
    else:
        model = ConditionedUNet(info.unet_config(), EncoderConfig(**info.encoder))
    model.load_state_dict(weights)
    return model.to(resolve_device(device)).eval(), info


def resolve_device(name: torch.device | str = "auto") -> torch.device:
    """"auto" -> cuda if available, else mps if available, else cpu; any other name is used as given."""
    if str(name) != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def available_checkpoints(folder: Path | None = None) -> list[str]:
    """Names of the diffusion model checkpoints in `folder` (default: the shipped ones, data/checkpoints/)."""
    folder = CHECKPOINT_DIR if folder is None else Path(folder)
    names = []
    for path in sorted(folder.glob("*.json")):
        try:
            if json.loads(path.read_text()).get("kind") == "model":
                names.append(path.stem)
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            continue
    return names


def checkpoint_stem(name_or_path: Path | str) -> Path:
    """"mnist" -> data/checkpoints/mnist; "runs/a" -> runs/a/model; "runs/a/model.json" -> runs/a/model."""
    path = Path(name_or_path)
    if path.is_dir():
        return path / "model"
    if path.suffix in (".json", ".safetensors"):
        return path.with_suffix("")
    if Path(f"{path}.json").exists():
        return path
    if path.parent == Path(".") and (CHECKPOINT_DIR / f"{path.name}.json").exists():
        return CHECKPOINT_DIR / path.name
    available = ", ".join(available_checkpoints()) or "none yet"
    raise FileNotFoundError(f"no checkpoint named {str(name_or_path)!r}: give a shipped name ({available}) or the "
                            "path of a checkpoint (a run folder, or STEM.json beside STEM.safetensors)")


# ---------------------------------------------------------------------------------------------------------
# Training state: what resuming needs, flattened into tensors + JSON
# ---------------------------------------------------------------------------------------------------------

def flatten_optimizer_state(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """torch optimizer state_dict -> (tensors named "PARAM_INDEX.KEY", JSON-ready rest)."""
    tensors, scalars = {}, {}
    for index, per_parameter in state_dict["state"].items():
        for key, value in per_parameter.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], rest: dict) -> dict:
    """The inverse of `flatten_optimizer_state`: a state_dict that `optimizer.load_state_dict` accepts."""
    state: dict[int, dict] = {}
    for name, value in [*tensors.items(), *rest["scalars"].items()]:
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    # JSON has no tuples: hyper-parameters such as AdamW's betas come back as lists
    param_groups = [{key: tuple(value) if isinstance(value, list) and key != "params" else value
                     for key, value in group.items()} for group in rest["param_groups"]]
    return {"state": state, "param_groups": param_groups}


def capture_rng_states() -> tuple[dict[str, torch.Tensor], dict]:
    """The global random states of torch (CPU, and CUDA/MPS when present), numpy and python."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors |= {f"cuda.{i}": state for i, state in enumerate(torch.cuda.get_rng_state_all())}
    if torch.backends.mps.is_available():
        tensors["mps"] = torch.mps.get_rng_state()
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, python_state, gauss_next = random.getstate()
    rest = {"numpy": [name, keys.tolist(), position, has_gauss, cached_gaussian],
            "python": [version, list(python_state), gauss_next]}
    return tensors, rest


def restore_rng_states(tensors: dict[str, torch.Tensor], rest: dict) -> None:
    """Put back what `capture_rng_states` captured (device states only where that device exists now)."""
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[f"cuda.{i}"] for i in range(torch.cuda.device_count()) if f"cuda.{i}" in tensors]
    if torch.cuda.is_available() and cuda:
        torch.cuda.set_rng_state_all(cuda)
    if torch.backends.mps.is_available() and "mps" in tensors:
        torch.mps.set_rng_state(tensors["mps"])
    name, keys, position, has_gauss, cached_gaussian = rest["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), position, has_gauss, cached_gaussian))
    version, python_state, gauss_next = rest["python"]
    random.setstate((version, tuple(python_state), gauss_next))


@dataclass
class TrainingState:
    """All a training run needs to continue as if it had never stopped."""

    step: int  # optimizer steps taken
    model: dict[str, torch.Tensor]  # the online weights (the ones the optimizer updates)
    ema: dict[str, torch.Tensor]  # the exponential moving average of the weights
    optimizer: dict  # torch optimizer state_dict
    rng_tensors: dict[str, torch.Tensor]  # from capture_rng_states()
    rng_rest: dict
    data_generator: torch.Tensor  # state of the generator that draws batch order, t, noise and class drop
    data_order: torch.Tensor  # the current epoch's permutation of the data set
    loss_history: list[float]  # one loss per step
    training_minutes: float
    config: dict  # TrainConfig, as a dict
    command: str


def save_training_state(stem: Path | str, state: TrainingState) -> None:
    """Write STEM.safetensors (every tensor of the state) and STEM.json (the rest)."""
    optimizer_tensors, optimizer_rest = flatten_optimizer_state(state.optimizer)
    tensors = {**with_prefix("model", state.model), **with_prefix("ema", state.ema),
               **with_prefix("optimizer", optimizer_tensors), **with_prefix("rng", state.rng_tensors),
               "data.generator": state.data_generator, "data.order": state.data_order,
               "loss_history": torch.tensor(state.loss_history, dtype=torch.float64)}
    meta = {"kind": "training_state", "step": state.step, "training_minutes": state.training_minutes,
            "config": state.config, "command": state.command, "optimizer": optimizer_rest, "rng": state.rng_rest}
    write_tensors_and_json(stem, tensors, meta)


def load_training_state(stem: Path | str) -> TrainingState:
    """Read what `save_training_state` wrote."""
    tensors, meta = read_tensors_and_json(stem)
    if meta.get("kind") != "training_state":
        raise CheckpointError(f"{stem}.json is not a training state (kind = {meta.get('kind')!r})")
    return TrainingState(
        step=meta["step"],
        model=without_prefix("model", tensors),
        ema=without_prefix("ema", tensors),
        optimizer=unflatten_optimizer_state(without_prefix("optimizer", tensors), meta["optimizer"]),
        rng_tensors=without_prefix("rng", tensors),
        rng_rest=meta["rng"],
        data_generator=tensors["data.generator"],
        data_order=tensors["data.order"],
        loss_history=tensors["loss_history"].tolist(),
        training_minutes=meta["training_minutes"],
        config=meta["config"],
        command=meta["command"],
    )
