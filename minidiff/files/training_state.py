"""A training state on disk: all a run needs to resume exactly, in the checkpoint format of `minidiff.files.checkpoint`.

`TrainingState` holds the online weights and their EMA, the optimizer's state, every random state (torch, CUDA or
MPS, numpy, python), the state of the generator that draws the data order and its current permutation, the loss
history, the minutes so far, the run's config, the commands that trained it and a float16 run's loss scale.
`save_training_state` writes it as STEM.safetensors (every tensor) + STEM.json (the rest), `load_training_state`
reads it back. Sampling never needs it: a model checkpoint (`minidiff.models`) holds the weights a sampler uses.
When a run saves its state, and how it restores it, is `minidiff.training.run`.
"""

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from minidiff.files.checkpoint import (
    CheckpointError,
    read_tensors_and_json,
    with_prefix,
    without_prefix,
    write_tensors_and_json,
)


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
    ema: dict[str, torch.Tensor]  # the exponential moving average of the weights; {} for a run that keeps none
    optimizer: dict  # torch optimizer state_dict
    rng_tensors: dict[str, torch.Tensor]  # from capture_rng_states()
    rng_rest: dict
    data_generator: torch.Tensor  # state of the generator that draws batch order, t, noise and class drop
    data_order: torch.Tensor  # the current epoch's permutation of the data set
    loss_history: list[float]  # one loss per step
    training_minutes: float
    config: dict  # the run's config (a TrainConfig or a VAETrainConfig), as a dict
    command: str
    grad_scaler: dict = field(default_factory=dict)  # a float16 run's loss scale (torch.amp.GradScaler); {}: none


def save_training_state(stem: Path | str, state: TrainingState) -> None:
    """Write STEM.safetensors (every tensor of the state) and STEM.json (the rest)."""
    optimizer_tensors, optimizer_rest = flatten_optimizer_state(state.optimizer)
    tensors = {**with_prefix("model", state.model), **with_prefix("ema", state.ema),
               **with_prefix("optimizer", optimizer_tensors), **with_prefix("rng", state.rng_tensors),
               "data.generator": state.data_generator, "data.order": state.data_order,
               "loss_history": torch.tensor(state.loss_history, dtype=torch.float64)}
    meta = {"kind": "training_state", "step": state.step, "training_minutes": state.training_minutes,
            "config": state.config, "command": state.command, "optimizer": optimizer_rest, "rng": state.rng_rest,
            "grad_scaler": state.grad_scaler}
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
        grad_scaler=meta.get("grad_scaler", {}),  # states saved before mixed precision have none
    )
