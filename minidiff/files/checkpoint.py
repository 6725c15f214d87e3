"""Checkpoint files: tensors in safetensors, and a JSON file beside them that says how they were made. No pickle.

A checkpoint is two files with one stem: `STEM.safetensors` (the tensors) and `STEM.json` (everything else,
plus the sha256 of the tensors file). `write_tensors_and_json` writes both atomically (`minidiff.files.atomic`),
tensors first, JSON last; `read_tensors_and_json` checks the sha256, so the JSON of one checkpoint is never used
with the tensors of another, and a truncated or corrupt file is reported by name. `checkpoint_stem` finds a
checkpoint by shipped name (`mnist` -> data/checkpoints/mnist.json + .safetensors) or by path.

What the files hold is decided elsewhere: a model or autoencoder checkpoint by `minidiff.models`, a training state
by `minidiff.files.training_state`.
"""

import hashlib
import json
from os import PathLike
from pathlib import Path

import safetensors.torch
import torch

from minidiff.data.paths import CHECKPOINT_DIR
from minidiff.files.atomic import atomic_write_bytes

FORMAT = "minidiff-checkpoint-1"  # bumped if the layout of the files ever changes


class CheckpointError(RuntimeError):
    """A checkpoint file is truncated, corrupt, or does not belong with the file beside it."""


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


def checkpoint_path(name_or_path: Path | str) -> Path:
    """A checkpoint's name or path as a Path; anything else (a number, a list, None) is a TypeError naming it."""
    if not isinstance(name_or_path, (str, PathLike)):
        raise TypeError(f"name_or_path must be a shipped checkpoint's name (e.g. 'mnist') or a path, got "
                        f"{type(name_or_path).__name__}")
    return Path(name_or_path)


def checkpoint_stem(name_or_path: Path | str) -> Path:
    """"mnist" -> data/checkpoints/mnist; "runs/a" -> runs/a/model; "runs/a/model.json" -> runs/a/model."""
    path = checkpoint_path(name_or_path)
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
                            "path of a checkpoint (a run folder, or STEM.json beside STEM.safetensors); shipped "
                            f"checkpoints are read from {CHECKPOINT_DIR} (set MINIDIFF_DATA for another data folder)")
