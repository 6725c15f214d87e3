r"""Training a diffusion model: a plain loop, one idea per function.

Papers followed:
- Ho, Jain & Abbeel 2020 (DDPM): the training loop, Algorithm 1; an EMA of the weights for sampling (appendix B).
- Salimans & Ho 2022: the v target (see `minidiff.forward.training_target`).
- Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting Strategy", sec. 3.4: per-step loss weights.
- Ho & Salimans 2022, "Classifier-Free Diffusion Guidance", Algorithm 1: train with the label dropped to a null class.
- Loshchilov & Hutter 2019: AdamW; Goyal et al. 2017: linear learning-rate warm-up.

    python -m minidiff train --config mnist --out runs/mnist --minutes 60     # a new run
    python -m minidiff train --out runs/mnist --minutes 120 --resume         # carry on to 120 minutes in all

What a run folder holds, and how --resume restores a run exactly, is `minidiff.run_folder`.

Reproducibility: every random draw of a step (batch order, t, eps, class drop) comes from one CPU generator,
dropout from torch's global RNG; both are saved in each checkpoint, so a resumed run has exactly the losses
that an uninterrupted run would have had.
"""

import argparse
import math
import shlex
import time
from pathlib import Path

import torch
from tqdm import tqdm

from minidiff.checkpoint import CheckpointError, resolve_device
from minidiff.conditioning import drop_tokens
from minidiff.forward import q_sample, training_target
from minidiff.run_folder import Run, new_run, resume_run, save_run, saved_training_state, write_sample_grid
from minidiff.schedule import NoiseSchedule, make_schedule
from minidiff.train_config import PRESETS, TrainConfig, load_images


def next_batch(run: Run, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The next minibatch of a random order that is drawn anew each epoch (the last, incomplete batch is skipped)."""
    batch_size = run.config.batch_size
    position = run.step % (len(images) // batch_size)
    if position == 0:
        run.order = torch.randperm(len(images), generator=run.generator)
    index = run.order[position * batch_size:(position + 1) * batch_size]
    return images[index], labels[index]  # (B, C, H, W), (B,)


def loss_weights(snr: torch.Tensor, gamma: float | None, prediction: str) -> torch.Tensor:
    r"""Min-SNR-gamma weights (Hang et al. 2023, sec. 3.4): per sample, so that high-SNR steps do not dominate.

    The x0 error is weighted by $\min(\mathrm{SNR}_t, \gamma)$. The eps error is SNR_t times the x0 error and the
    v error (SNR_t + 1) times it, so their weights divide by that factor. gamma = None: all weights 1.
    """
    if gamma is None:
        return torch.ones_like(snr, dtype=torch.float32)
    if prediction == "eps":
        # $w_t = \min(\mathrm{SNR}_t, \gamma) / \mathrm{SNR}_t = \min(1, \gamma / \mathrm{SNR}_t)$ (1 where SNR = 0)
        weights = (gamma / snr).clamp(max=1.0)
    elif prediction == "x0":
        # $w_t = \min(\mathrm{SNR}_t, \gamma)$
        weights = snr.clamp(max=gamma)
    else:
        # $w_t = \min(\mathrm{SNR}_t, \gamma) / (\mathrm{SNR}_t + 1)$
        weights = snr.clamp(max=gamma) / (snr + 1)
    return weights.float()


def conditioning_inputs(config: TrainConfig, labels: torch.Tensor, generator: torch.Generator,
                        device: torch.device) -> dict[str, torch.Tensor]:
    """The model's condition for a batch, as keyword arguments, with some conditions dropped for guidance
    (Ho & Salimans 2022, Algorithm 1): class labels (B,) become the null class, index num_classes; tokens (B, L)
    become the empty condition, and single words are dropped too (`minidiff.conditioning.drop_tokens`)."""
    if config.encoder is not None:
        tokens = drop_tokens(labels, config.class_drop_prob, config.token_drop_prob, generator)  # (B, L)
        return {"tokens": tokens.to(device)}
    num_classes = config.unet.num_classes
    if num_classes is None:
        return {}
    drop = torch.rand(len(labels), generator=generator) < config.class_drop_prob  # (B,)
    return {"class_labels": torch.where(drop, num_classes, labels).to(device)}


def diffusion_loss(run: Run, schedule: NoiseSchedule, x0: torch.Tensor, labels: torch.Tensor,
                   device: torch.device) -> torch.Tensor:
    """The loss of one batch: DDPM's Algorithm 1, lines 2-5, with a choice of target and Min-SNR weights.

    The random draws and the noising happen on the CPU with the run's generator (the same for any device);
    only the network runs on `device`.
    """
    config, generator = run.config, run.generator
    prediction = config.unet.prediction
    # 1. a random step and noise for each image (Algorithm 1, lines 3-4)
    # $t \sim \mathrm{Uniform}\{0, \dots, T-1\}, \quad \epsilon \sim \mathcal{N}(0, I)$
    t = torch.randint(0, schedule.T, (len(x0),), generator=generator)  # (B,)
    eps = torch.randn(x0.shape, generator=generator)  # (B, C, H, W)
    # 2. the condition, sometimes dropped for classifier-free guidance
    condition = conditioning_inputs(config, labels, generator, device)
    # 3. the noisy image, eq. (4), and what the network should answer
    x_t = q_sample(schedule, x0, t, eps)
    target = training_target(prediction, x0, eps, schedule.alpha_bar[t])
    # 4. $\| \mathrm{target} - f_\theta(x_t, t) \|^2$, averaged per image, weighted, averaged over the batch
    output = run.model(x_t.to(device), t.to(device), **condition)
    per_image = ((output - target.to(device)) ** 2).mean(dim=(1, 2, 3))  # (B, C, H, W) -> (B,)
    weights = loss_weights(schedule.snr[t], config.min_snr_gamma, prediction).to(device)  # (B,)
    return (weights * per_image).mean()


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up from ~0 to config.lr over config.warmup_steps, then constant."""
    # $\eta_s = \eta \cdot \min(1, (s + 1) / s_{\mathrm{warmup}})$
    return config.lr * min(1.0, (step + 1) / max(1, config.warmup_steps))


def ema_decay(config: TrainConfig, step: int) -> float:
    """The EMA decay at a step: small at first, so the average forgets the random initial weights quickly.

    The warm-up (1 + s) / (10 + s) is TensorFlow's ExponentialMovingAverage with num_updates.
    """
    return min(config.ema_decay, (1 + step) / (10 + step))


def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """Move each EMA weight a fraction (1 - decay) towards the model's weight."""
    with torch.no_grad():
        for ema_weight, weight in zip(ema.parameters(), model.parameters()):
            # $\theta_{\mathrm{ema}} \leftarrow \beta\, \theta_{\mathrm{ema}} + (1 - \beta)\, \theta$
            ema_weight.lerp_(weight, 1.0 - decay)
        for ema_buffer, buffer in zip(ema.buffers(), model.buffers()):
            ema_buffer.copy_(buffer)


def train_step(run: Run, schedule: NoiseSchedule, images: torch.Tensor, labels: torch.Tensor,
               device: torch.device) -> float:
    """One optimizer step: batch, loss, gradient (clipped), AdamW, EMA. Returns the loss."""
    x0, y = next_batch(run, images, labels)
    loss = diffusion_loss(run, schedule, x0, y, device)
    value = loss.item()
    if not math.isfinite(value):
        raise FloatingPointError(f"the loss is {value} at step {run.step}")
    for group in run.optimizer.param_groups:
        group["lr"] = learning_rate(run.config, run.step)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.config.grad_clip)
    run.optimizer.step()
    update_ema(run.ema, run.model, ema_decay(run.config, run.step))
    run.step += 1
    run.losses.append(value)
    return value


def train(config: TrainConfig, out: Path | str, resume: bool = False, device: torch.device | str = "auto",
          command: str = "", progress: bool = True) -> Run:
    """Train until config.steps or config.minutes (counting earlier sessions); checkpoint on the way and at the end."""
    out, device = Path(out), resolve_device(device)
    if not resume and (out / "train_state.json").exists():
        raise FileExistsError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")
    images, labels = load_images(config, cache_dir=out)
    schedule = make_schedule(config.schedule, config.T, zero_terminal_snr=config.zero_terminal_snr)
    run = resume_run(out, config, device, command) if resume else new_run(config, device, command)
    start, first_step, saved_at = time.monotonic(), run.step, time.monotonic()

    def minutes() -> float:
        """Training time of all sessions together."""
        return run.minutes + (time.monotonic() - start) / 60

    bar = tqdm(total=config.steps, initial=run.step, disable=not progress, unit="step", desc=str(out))
    try:
        while not config.finished(run.step, minutes()):
            loss = train_step(run, schedule, images, labels, device)
            images_per_second = (run.step - first_step) * config.batch_size / max(time.monotonic() - start, 1e-9)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", images_per_s=f"{images_per_second:.0f}")
            if config.sample_every_steps and run.step % config.sample_every_steps == 0:
                write_sample_grid(run, schedule, out, device)
            if config.checkpoint_due(run.step, (time.monotonic() - saved_at) / 60):
                save_run(run, out, device, minutes())
                saved_at = time.monotonic()
    except FloatingPointError as error:
        raise FloatingPointError(f"{error}: training stopped. The last good checkpoint in {out} is kept; lower the "
                                 "learning rate or raise the warm-up, then continue with --resume") from None
    finally:
        bar.close()
    save_run(run, out, device, minutes())
    write_sample_grid(run, schedule, out, device)
    return run


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this invocation, with every setting spelled out."""
    words = ["python", "-m", "minidiff", "train", "--out", args.out]
    if args.resume:
        words.append("--resume")
    else:
        words += ["--config", args.config, "--seed", str(args.seed)]
    if args.steps is not None:
        words += ["--steps", str(args.steps)]
    if args.minutes is not None:
        words += ["--minutes", str(args.minutes)]
    words += ["--device", args.device]
    if args.threads is not None:
        words += ["--threads", str(args.threads)]
    return shlex.join(words)


def run(args: argparse.Namespace) -> Run:
    """The train command: a new run from a preset, or --resume with the run's own saved config."""
    try:
        return train_from_arguments(args)
    except (FileNotFoundError, FileExistsError, CheckpointError, FloatingPointError) as error:
        raise SystemExit(f"minidiff train: {error}") from None


def train_from_arguments(args: argparse.Namespace) -> Run:
    """The work of `run`, with errors left as exceptions."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.resume:
        config = TrainConfig.from_dict(saved_training_state(Path(args.out)).config)
    else:
        config = PRESETS[args.config]()
        config.seed = args.seed
    if args.steps is not None or args.minutes is not None:
        config.steps, config.minutes = args.steps, args.minutes
    return train(config, args.out, resume=args.resume, device=args.device, command=command_line(args),
                 progress=not args.quiet)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the train command's options on its sub-command parser."""
    parser.add_argument("--config", choices=sorted(PRESETS), default="mnist",
                        help="preset for a new run (default: mnist)")
    parser.add_argument("--out", required=True, help="run folder, e.g. runs/mnist")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, help="train until this many steps in all (default: the preset's)")
    budget.add_argument("--minutes", type=float, help="train until this many minutes in all, earlier sessions included")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--seed", type=int, default=0, help="seed of a new run (default: 0)")
    parser.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda or mps")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's choice; 1 is often faster on a busy 2-core CPU)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)
