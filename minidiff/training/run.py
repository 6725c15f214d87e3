"""A training run's state and its folder: what a checkpoint saves, how --resume restores it, the sample grids.

A run folder holds model.json + model.safetensors (the EMA weights: a checkpoint that samplers load),
train_state.json + train_state.safetensors (all that resuming needs) and samples/step_NNNNNN.png.
The training loop itself is `minidiff.train`.
"""

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch

from minidiff.files.training_state import (
    TrainingState,
    capture_rng_states,
    load_training_state,
    restore_rng_states,
    save_training_state,
)
from minidiff.models import CheckpointInfo, latent_data_info, save_checkpoint
from minidiff.nets.conditioning import ConditionedUNet
from minidiff.nets.unet import UNet
from minidiff.training.config import TrainConfig


@dataclass
class Run:
    """What changes while training; every checkpoint saves it and --resume restores it."""

    config: TrainConfig
    model: UNet | ConditionedUNet  # the online weights, which the optimizer updates
    ema: UNet | ConditionedUNet  # their exponential moving average: what samplers use
    optimizer: torch.optim.AdamW
    generator: torch.Generator  # on the CPU: draws batch order, t, eps and class drop
    order: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))  # this epoch's permutation
    step: int = 0  # optimizer steps taken
    losses: list[float] = field(default_factory=list)  # one per step
    minutes: float = 0.0  # training time of earlier sessions
    command: str = ""  # every command that worked on this run, one per line


def new_run(config: TrainConfig, device: torch.device, command: str) -> Run:
    """Fresh weights, optimizer and generator, all from config.seed."""
    torch.manual_seed(config.seed)  # the weights' initialisation and, later, dropout
    model = UNet(config.unet) if config.encoder is None else ConditionedUNet(config.unet, config.encoder)
    model = model.to(device)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return Run(config, model, ema, optimizer, torch.Generator().manual_seed(config.seed), command=command)


def saved_training_state(out: Path) -> TrainingState:
    """The training state of the run in `out`, with a clear error when there is none."""
    if not (out / "train_state.json").exists():
        raise FileNotFoundError(f"there is no run to resume in {out} (no train_state.json); start one without --resume")
    return load_training_state(out / "train_state")


def resume_run(out: Path, config: TrainConfig, device: torch.device, command: str) -> Run:
    """The run saved in `out`, exactly as it was at its last checkpoint, to continue under `config`."""
    state = saved_training_state(out)
    saved = TrainConfig.from_dict(state.config)
    changed = [name for name in saved.math_fields() if getattr(saved, name) != getattr(config, name)]
    if changed:
        raise ValueError(f"{out} was trained with other settings for {changed}; resume it with its own config "
                         f"(the CLI does: `--resume` reads it from {out}/train_state.json)")
    run = new_run(config, device, command=f"{state.command}\n{command}")
    run.model.load_state_dict(state.model)
    run.ema.load_state_dict(state.ema)
    run.optimizer.load_state_dict(state.optimizer)
    run.generator.set_state(state.data_generator)
    run.order, run.step, run.losses = state.data_order, state.step, state.loss_history
    run.minutes = state.training_minutes
    restore_rng_states(state.rng_tensors, state.rng_rest)  # last: building the model above drew from the RNG
    return run


def save_run(run: Run, out: Path, device: torch.device, minutes: float) -> None:
    """Write the training state, then the model checkpoint (the EMA weights), each atomically."""
    config = run.config
    rng_tensors, rng_rest = capture_rng_states()
    save_training_state(out / "train_state", TrainingState(
        step=run.step, model=run.model.state_dict(), ema=run.ema.state_dict(), optimizer=run.optimizer.state_dict(),
        rng_tensors=rng_tensors, rng_rest=rng_rest, data_generator=run.generator.get_state(), data_order=run.order,
        loss_history=run.losses, training_minutes=minutes, config=config.to_dict(), command=run.command))
    data = {"name": config.data, "image_shape": list(config.image_shape())}
    if config.data == "shapes_latents":
        data.update(latent_data_info(config.autoencoder))
    encoder = None if config.encoder is None else config.encoder.to_dict()
    info = CheckpointInfo(model=config.unet.to_dict(), diffusion=config.diffusion.to_dict(), data=data, command=run.command,
                          seed=config.seed, device=str(device), training_minutes=round(minutes, 2), step=run.step,
                          encoder=encoder)
    save_checkpoint(out / "model", run.ema.state_dict(), info)
