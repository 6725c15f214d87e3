"""A training run: what changes while a model trains, the one format every run is saved in, and the one loop.

Whatever it trains (a diffusion model, the autoencoder), a run folder holds train_state.json + train_state.safetensors
(`minidiff.files.training_state`): the online weights, their EMA if the run keeps one, the optimizer, every random
state, the data order, the losses and the minutes so far. `--resume` rebuilds the run from its config and restores all
of it, so a resumed run takes exactly the steps an uninterrupted one would have taken.

A diffusion run also writes model.json + model.safetensors (the EMA weights: a checkpoint that samplers load) and
samples/step_NNNNNN.png; an autoencoder run writes autoencoder.json + .safetensors when it ends
(`minidiff.training.vae`).

The loop (`train_loop`) and the update (`optimizer_step`: learning-rate schedule, clipped gradient, AdamW, EMA) are
the same for every model; each model brings its own step: `minidiff.training.loop.train_step` for diffusion,
`minidiff.training.vae.vae_step` for the autoencoder. How the update is computed is here too, once for every model:
on one process or several (`minidiff.training.distributed`: each process computes its rows of the batch, in
config.accumulate micro-batches, and DistributedDataParallel averages the gradients), in float32 or mixed precision
(config.precision: the forward pass under bf16 or fp16 autocast; fp16 scales the loss with a GradScaler so that small
gradients do not underflow, Micikevicius et al. 2018), with channels-last weights and torch.compile when asked.

Papers: Loshchilov & Hutter 2019 (AdamW) and 2017 (cosine decay); Goyal et al. 2017 (linear warm-up); Ho et al. 2020,
appendix B (an EMA of the weights for sampling).
"""

import contextlib
import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from minidiff.files.training_state import (
    TrainingState,
    capture_rng_states,
    load_training_state,
    restore_rng_states,
    save_training_state,
)
from minidiff.models import CheckpointInfo, backbone_of, build_network, latent_data_info, save_checkpoint
from minidiff.training.config import LATENT_DATASETS, LoopConfig, TrainConfig
from minidiff.training.distributed import Processes, main_decides, mean_over_processes, micro_batches, no_sync, wrap
from minidiff.training.dropout import DropoutMasks, use_per_image_dropout


@dataclass
class Run:
    """What changes while training; every checkpoint saves it and --resume restores it."""

    config: LoopConfig  # a TrainConfig (diffusion) or a VAETrainConfig (autoencoder)
    model: nn.Module  # the online weights, which the optimizer updates
    ema: nn.Module | None  # their exponential moving average, what samplers use; None for a run that keeps none
    optimizer: torch.optim.AdamW
    generator: torch.Generator  # on the CPU: draws batch order, t, eps and condition dropout
    order: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))  # this epoch's permutation
    step: int = 0  # optimizer steps taken
    losses: list[float] = field(default_factory=list)  # one per step
    minutes: float = 0.0  # training time so far, all sessions (brought up to date at every checkpoint)
    command: str = ""  # every command that worked on this run, one per line
    # how the steps are computed (not saved: rebuilt from the config and the environment)
    processes: Processes = field(default_factory=Processes)  # this process among the run's (torchrun)
    forward_model: nn.Module | None = None  # what a step calls: the model, wrapped (DDP, torch.compile) as configured
    scaler: torch.amp.GradScaler | None = None  # scales fp16 losses; a no-op in other precisions
    dropout_masks: DropoutMasks = field(default_factory=DropoutMasks)  # which images dropout is drawing for


def start_run(config: LoopConfig, model: nn.Module, device: torch.device, command: str, keep_ema: bool,
              processes: Processes | None = None, forward: nn.Module | None = None) -> Run:
    """A new run of `model` (built by the caller right after torch.manual_seed(config.seed)): AdamW, an EMA copy if
    keep_ema, and the generator of the run's random draws, seeded with config.seed.

    processes: this process among the run's (`minidiff.training.distributed.start`); None: a run of one process.
    forward: the module a step calls, if not the model itself (the autoencoder's, with its loss); it is wrapped for
    several processes and compiled as the config says, and its dropout draws a mask per image.
    """
    device = torch.device(device)
    processes = Processes(device=device) if processes is None else processes
    model = model.to(device)
    ema = copy.deepcopy(model).eval().requires_grad_(False) if keep_ema else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    run = Run(config, model, ema, optimizer, torch.Generator().manual_seed(config.seed), command=command,
              processes=processes, scaler=torch.amp.GradScaler(device.type, enabled=config.precision == "fp16"))
    use_per_image_dropout(model, run.dropout_masks)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)  # 4-D weights in NHWC order; convolutions then run in it
    run.forward_model = wrap(model if forward is None else forward, processes)
    if config.compile:
        run.forward_model = torch.compile(run.forward_model)
    return run


def saved_training_state(out: Path) -> TrainingState:
    """The training state of the run in `out`, with a clear error when there is none."""
    if not (out / "train_state.json").exists():
        raise FileNotFoundError(f"there is no run to resume in {out} (no train_state.json); start one without --resume")
    return load_training_state(out / "train_state")


def restore_run(run: Run, state: TrainingState, out: Path) -> Run:
    """Put a saved state back into a freshly started run of the same config: weights, EMA, optimizer, data order,
    losses, minutes, commands and every random state, so the run continues exactly where it was saved."""
    saved = type(run.config).from_dict(state.config)
    changed = [name for name in saved.math_fields() if getattr(saved, name) != getattr(run.config, name)]
    if changed:
        raise ValueError(f"{out} was trained with other settings for {changed}; resume it with its own config "
                         f"(the CLI does: `--resume` reads it from {out}/train_state.json)")
    run.model.load_state_dict(state.model)
    if run.ema is not None:
        run.ema.load_state_dict(state.ema)
    run.optimizer.load_state_dict(state.optimizer)
    if state.grad_scaler and run.scaler.is_enabled():  # the fp16 loss scale, as it was
        run.scaler.load_state_dict(state.grad_scaler)
    run.generator.set_state(state.data_generator)
    run.order, run.step, run.losses = state.data_order, state.step, state.loss_history
    run.minutes, run.command = state.training_minutes, f"{state.command}\n{run.command}"
    restore_rng_states(state.rng_tensors, state.rng_rest)  # last: building the model drew from the RNG
    return run


def save_state(run: Run, out: Path) -> None:
    """Write the run's training state, atomically: all that --resume needs."""
    rng_tensors, rng_rest = capture_rng_states()
    optimizer = run.optimizer.state_dict()
    optimizer["state"] = {index: contiguous(state) for index, state in optimizer["state"].items()}
    save_training_state(out / "train_state", TrainingState(
        step=run.step, model=contiguous(run.model.state_dict()), ema={} if run.ema is None else run.ema.state_dict(),
        optimizer=optimizer, rng_tensors=rng_tensors, rng_rest=rng_rest,
        data_generator=run.generator.get_state(), data_order=run.order, loss_history=run.losses,
        training_minutes=run.minutes, config=run.config.to_dict(), command=run.command,
        grad_scaler=run.scaler.state_dict()))


def contiguous(tensors: dict) -> dict:
    """The tensors of a state dict in the standard memory order (channels-last weights are not), as safetensors
    stores them."""
    return {name: value.contiguous() if torch.is_tensor(value) else value for name, value in tensors.items()}


# ------------------------------------------------------------------ a diffusion model's run


def new_run(config: TrainConfig, device: torch.device, command: str, processes: Processes | None = None) -> Run:
    """A new diffusion run: fresh weights (a U-Net or a DiT, with its token encoder when conditioned on tokens), an
    EMA of them, AdamW and the generator, all from config.seed."""
    torch.manual_seed(config.seed)  # the weights' initialisation
    model = build_network(config.network, config.encoder)
    return start_run(config, model, device, command, keep_ema=True, processes=processes)


def resume_run(out: Path, config: TrainConfig, device: torch.device, command: str,
               processes: Processes | None = None) -> Run:
    """The diffusion run saved in `out`, exactly as it was at its last checkpoint, to continue under `config`."""
    return restore_run(new_run(config, device, command, processes), saved_training_state(out), out)


def save_run(run: Run, out: Path, device: torch.device) -> None:
    """Write the training state, then the model checkpoint (the EMA weights), each atomically."""
    save_state(run, out)
    save_model(run, out / "model", device)


def save_model(run: Run, stem: Path, device: torch.device) -> None:
    """Write the EMA weights as a model checkpoint STEM.safetensors + STEM.json, atomically."""
    config = run.config
    data = {"name": config.data, "image_shape": list(config.image_shape())}
    if config.data in LATENT_DATASETS:
        data.update(latent_data_info(config.autoencoder))
    encoder = None if config.encoder is None else config.encoder.to_dict()
    info = CheckpointInfo(model=config.network.to_dict(), diffusion=config.diffusion.to_dict(), data=data,
                          command=run.command, seed=config.seed, device=str(device),
                          training_minutes=round(run.minutes, 2), step=run.step, encoder=encoder,
                          backbone=backbone_of(config.network))
    save_checkpoint(stem, contiguous(run.ema.state_dict()), info)


# ------------------------------------------------------------------ the one loop, for every model


def learning_rate(config: LoopConfig, step: int) -> float:
    """Linear warm-up from ~0 to config.lr over config.warmup_steps; then constant, or (with config.decay_steps) a
    cosine decay to a tenth of config.lr over decay_steps, then constant. The schedule does not depend on the budget
    (steps or minutes), so a run cut short and resumed is the same run."""
    # $\mathrm{lr}_k = \mathrm{lr} \cdot \min(1, (k + 1) / k_{\mathrm{warmup}})$ at step $k$
    rate = config.lr * min(1.0, (step + 1) / max(1, config.warmup_steps))
    if config.decay_steps is None:
        return rate
    progress = min(step, config.decay_steps) / config.decay_steps
    # $\mathrm{lr}_k \leftarrow \mathrm{lr}_k\,(0.55 + 0.45 \cos(\pi k / K))$, K = decay_steps: from lr down to lr / 10
    return rate * (0.55 + 0.45 * math.cos(math.pi * progress))


def ema_decay(config: TrainConfig, step: int) -> float:  # only runs that keep an EMA (diffusion) ask
    r"""The EMA decay $\delta$ at a step: small at first, so the average forgets the random initial weights quickly.

    The warm-up (1 + step) / (10 + step) is TensorFlow's ExponentialMovingAverage with num_updates.
    """
    return min(config.ema_decay, (1 + step) / (10 + step))


def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    r"""Move each EMA weight a fraction $1 - \delta$ (1 - decay) towards the model's weight."""
    with torch.no_grad():
        for ema_weight, weight in zip(ema.parameters(), model.parameters()):
            # $\theta_{\mathrm{ema}} \leftarrow \delta\, \theta_{\mathrm{ema}} + (1 - \delta)\, \theta$
            ema_weight.lerp_(weight, 1.0 - decay)
        for ema_buffer, buffer in zip(ema.buffers(), model.buffers()):
            ema_buffer.copy_(buffer)


def autocast(config: LoopConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """The forward pass in config.precision: bf16 or fp16 autocast on `device` (matrix products and convolutions in
    16 bits, reductions and the loss in float32), or plain float32."""
    if config.precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if config.precision == "bf16" else torch.float16)


def backward_batch(run: Run, loss_of: Callable[[slice], torch.Tensor]) -> float:
    """Backpropagate this process's rows of the batch, micro-batch by micro-batch, and return the batch's loss.

    loss_of(rows): the mean loss of the batch's rows `rows`. Each micro-batch's loss is divided by their number, so
    the gradients add up to the gradient of the mean over this process's rows; DistributedDataParallel averages
    that over the processes during the last backward pass. Returns the mean loss over the whole batch.
    """
    parts = micro_batches(run.config.batch_size, run.processes, run.config.accumulate)
    total = 0.0
    for k, rows in enumerate(parts):
        positions = range(rows.start, rows.stop)  # the images' places in the batch: their dropout masks follow them
        with (no_sync(run.forward_model, skip=k < len(parts) - 1),
              run.dropout_masks.images(run.config.seed, run.step, positions, run.config.batch_size)):
            with autocast(run.config, run.processes.device):
                loss = loss_of(rows) / len(parts)
            run.scaler.scale(loss).backward()
        total += loss.item()
    return mean_over_processes(total, run.processes)


def optimizer_step(run: Run, loss_of: Callable[[slice], torch.Tensor]) -> float:
    """One update from a batch, for any model: learning rate, gradient (`backward_batch`; clipped), AdamW, the EMA
    if the run keeps one. loss_of(rows) is the mean loss of the batch's rows `rows` (`slice(None)`: all of them).
    Returns the batch's loss; a loss that is not finite stops training (FloatingPointError) before any update."""
    for group in run.optimizer.param_groups:
        group["lr"] = learning_rate(run.config, run.step)
    run.optimizer.zero_grad(set_to_none=True)
    value = backward_batch(run, loss_of)
    if not math.isfinite(value):
        raise FloatingPointError(f"the loss is {value} at step {run.step}")
    run.scaler.unscale_(run.optimizer)  # clip the true gradient, not the scaled one (fp16)
    torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.config.grad_clip)
    run.scaler.step(run.optimizer)  # skipped (fp16) if the scaled gradient overflowed; the scale is then lowered
    run.scaler.update()
    if run.ema is not None:
        update_ema(run.ema, run.model, ema_decay(run.config, run.step))
    run.step += 1
    return value


def train_loop(run: Run, out: Path, take_step: Callable[[Run], dict[str, str]], save: Callable[[Run], None],
               after_step: Callable[[Run], None] | None = None, progress: bool = True) -> Run:
    """Train until config.steps or config.minutes (earlier sessions included), the one loop of every model.

    take_step(run) takes one optimizer step and returns what the progress bar shows; save(run) writes a checkpoint,
    whenever one is due (config.checkpoint_due) and at the end, with run.minutes brought up to date first;
    after_step(run), if given, runs after every step (e.g. a sample grid now and then). On several processes, only
    the main one saves, runs after_step and shows progress, and its clock decides when the run is over.
    """
    main = run.processes.is_main
    config, start = run.config, time.monotonic()
    earlier_minutes, first_step, saved_at = run.minutes, run.step, start

    def minutes() -> float:
        """Training time of all sessions together."""
        return earlier_minutes + (time.monotonic() - start) / 60

    bar = tqdm(total=config.steps, initial=run.step, disable=not (progress and main), unit="step", desc=str(out))
    try:
        while not main_decides(config.finished(run.step, minutes()), run.processes):
            shown = take_step(run)
            images_per_second = (run.step - first_step) * config.batch_size / max(time.monotonic() - start, 1e-9)
            run.minutes = minutes()
            bar.update(1)
            bar.set_postfix(**shown, images_per_s=f"{images_per_second:.0f}")
            if after_step is not None and main:
                after_step(run)
            if main and config.checkpoint_due(run.step, (time.monotonic() - saved_at) / 60):
                save(run)
                saved_at = time.monotonic()
    except FloatingPointError as error:
        raise FloatingPointError(f"{error}: training stopped. The last good checkpoint in {out} is kept; lower the "
                                 "learning rate or raise the warm-up, then continue with --resume") from None
    finally:
        bar.close()
    run.minutes = minutes()
    if main:
        save(run)
    return run
