"""A training run's state and its folder: what a checkpoint saves, how --resume restores it, the sample grids.

A run folder holds model.json + model.safetensors (the EMA weights: a checkpoint that samplers load),
train_state.json + train_state.safetensors (all that resuming needs) and samples/step_NNNNNN.png.
The training loop itself is `minidiff.train`.
"""

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch

from minidiff.autoencoder import load_autoencoder
from minidiff.checkpoint import (CheckpointInfo, TrainingState, capture_rng_states, load_training_state,
                                 restore_rng_states, save_checkpoint, save_training_state)
from minidiff.conditioning import ConditionedUNet, condition_tokens, token_denoiser
from minidiff.data import from_model
from minidiff.latent import grid_attributes, latent_data_info, sample_shapes
from minidiff.sample import image_grid, write_png
from minidiff.samplers import model_denoiser, sample_ddpm
from minidiff.schedule import NoiseSchedule
from minidiff.train_config import TrainConfig
from minidiff.unet import UNet


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
    diffusion = {"schedule": config.schedule, "T": config.T, "zero_terminal_snr": config.zero_terminal_snr,
                 "prediction": config.unet.prediction}
    data = {"name": config.data, "image_shape": list(config.image_shape())}
    if config.data == "shapes_latents":
        data.update(latent_data_info(config.autoencoder))
    encoder = None if config.encoder is None else config.encoder.to_dict()
    info = CheckpointInfo(model=config.unet.to_dict(), diffusion=diffusion, data=data, command=run.command,
                          seed=config.seed, device=str(device), training_minutes=round(minutes, 2), step=run.step,
                          encoder=encoder)
    save_checkpoint(out / "model", run.ema.state_dict(), info)


def write_sample_grid(run: Run, schedule: NoiseSchedule, out: Path, device: torch.device) -> Path:
    """Draw a grid with the EMA weights, always from the same noise, into out/samples/: two of each class, or
    (Shapes) twelve conditions, as attributes or full captions, decoded when the model works in latent space."""
    config, generator = run.config, torch.Generator().manual_seed(run.config.seed)
    if config.data == "shapes_latents":
        autoencoder, autoencoder_info = load_autoencoder(config.autoencoder, device)
        tokens = condition_tokens(grid_attributes(), config.encoder.kind)
        x0 = sample_shapes(run.ema, schedule, config.unet.prediction, autoencoder, autoencoder_info.scale_factor,
                           tokens, "ddpm", config.sample_grid_steps, generator=generator, device=device)
        columns = 6
    elif config.data == "shapes":
        tokens = condition_tokens(grid_attributes(), config.encoder.kind).to(device)
        x0 = sample_ddpm(token_denoiser(run.ema, tokens), (len(tokens), *config.image_shape()), schedule,
                         config.unet.prediction, steps=config.sample_grid_steps, generator=generator, device=device)
        columns = 6
    else:
        num_classes = config.unet.num_classes
        n = 2 * num_classes if num_classes is not None else 16
        labels = torch.arange(n, device=device) % num_classes if num_classes is not None else None
        x0 = sample_ddpm(model_denoiser(run.ema, class_labels=labels), (n, *config.image_shape()), schedule,
                         config.unet.prediction, steps=config.sample_grid_steps, generator=generator, device=device)
        columns = num_classes or 8
    path = out / "samples" / f"step_{run.step:06d}.png"
    write_png(image_grid(from_model(x0), columns=columns), path)
    return path
