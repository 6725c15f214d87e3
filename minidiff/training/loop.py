r"""Training a diffusion model: a batch, DDPM's loss, an optimizer step, in the one loop every model trains in.

The loop itself (`minidiff.training.run.train_loop`) is the same whatever trains in it: take a step, show progress,
checkpoint when due and at the end, stop when the budget (steps or minutes, earlier sessions included) is spent.
This module gives it the diffusion model's step (`train_step`: `next_batch`, `diffusion_loss`, `optimizer_step`) and
sample grids; the autoencoder's step is in `minidiff.training.vae`.

Papers followed:
- Ho, Jain & Abbeel 2020 (DDPM): the training loop, Algorithm 1; an EMA of the weights for sampling (appendix B).
- Salimans & Ho 2022: the v target (see `minidiff.diffusion.forward.training_target`).
- Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting Strategy", sec. 3.4: per-step loss weights
  (`minidiff.diffusion.loss.loss_weights`).
- Ho & Salimans 2022, "Classifier-Free Diffusion Guidance", Algorithm 1: train with the label dropped to a null class.
- Liu et al. 2023, Lipman et al. 2023, Esser et al. 2024: a rectified-flow model (prediction "flow") in the same loop,
  trained on the straight path's velocity at times drawn from [0, 1] (`flow_loss`, `minidiff.diffusion.flow`).

The update itself (AdamW, the learning-rate warm-up and decay, the EMA) is `minidiff.training.run.optimizer_step`,
the same for every model; its papers are named there.

    python -m minidiff train --config mnist --out runs/mnist --minutes 60     # a new run
    python -m minidiff train --out runs/mnist --minutes 120 --resume         # carry on to 120 minutes in all

Reproducibility: every random draw of a step (batch order, t, eps, class drop) comes from one CPU generator, drawn
for the whole batch on every process (`draw_noise`); dropout masks come from each image's own generator
(`minidiff.training.dropout`). The generator is saved in each checkpoint, so a resumed run has exactly the losses
that an uninterrupted run would have had, and a run on several processes (`minidiff.training.distributed`) the
losses of one process.
"""

from dataclasses import dataclass
from pathlib import Path

import torch

from minidiff.data.pixels import from_model
from minidiff.data.shapes import grid_attributes
from minidiff.diffusion.flow import FLOW, linear_path, sample_flow_times, velocity_target
from minidiff.diffusion.forward import q_sample, training_target
from minidiff.diffusion.loop import model_denoiser
from minidiff.diffusion.loss import loss_weights
from minidiff.diffusion.samplers import sample
from minidiff.diffusion.schedule import NoiseSchedule
from minidiff.files.images import picture_grid, write_png
from minidiff.models import clip_text_tower, load_autoencoder
from minidiff.nets.conditioning import condition_tokens, drop_tokens
from minidiff.nets.prompts import prompt_tokens
from minidiff.pipeline import sample_shapes, token_denoiser
from minidiff.training.config import LATENT_DATASETS, TrainConfig
from minidiff.training.data import load_images
from minidiff.training.distributed import main_first, start, wait_for_main
from minidiff.training.run import Run, new_run, optimizer_step, resume_run, save_model, save_run, train_loop

EMOJI_GRID_PROMPTS = ("grinning face", "fox", "red apple", "pizza", "rocket", "waving hand: dark skin tone",
                      "grinning face in twemoji style", "fox in twemoji style", "red apple in noto style",
                      "pizza in noto style", "woman firefighter: light skin tone", "flag: japan")


def next_batch(run: Run, images: torch.Tensor, conditions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The next minibatch of a random order that is drawn anew each epoch (the last, incomplete batch is skipped).

    conditions: class labels (N,) or token ids (N, L), one per image; the batch's come back beside its images."""
    batch_size = run.config.batch_size
    position = run.step % (len(images) // batch_size)
    if position == 0:
        run.order = torch.randperm(len(images), generator=run.generator)
    index = run.order[position * batch_size:(position + 1) * batch_size]
    return images[index], conditions[index]  # (B, C, H, W), (B,) or (B, L)


def conditioning_inputs(config: TrainConfig, conditions: torch.Tensor, generator: torch.Generator,
                        device: torch.device) -> dict[str, torch.Tensor]:
    """The model's condition for a batch, as keyword arguments, with some conditions dropped for guidance
    (Ho & Salimans 2022, Algorithm 1). conditions: class labels (B,), which become the null class, index
    num_classes; or token ids (B, L), which become the empty condition, with single words dropped too
    (`minidiff.nets.conditioning.drop_tokens`)."""
    if config.encoder is not None:
        tokens = drop_tokens(conditions, config.class_drop_prob, config.token_drop_prob, generator)  # (B, L)
        return {"tokens": tokens.to(device)}
    num_classes = config.network.num_classes
    if num_classes is None:
        return {}
    drop = torch.rand(len(conditions), generator=generator) < config.class_drop_prob  # (B,)
    return {"class_labels": torch.where(drop, num_classes, conditions).to(device)}


@dataclass
class NoiseDraws:
    """The random draws of a batch: a step t and noise eps per image (DDPM's Algorithm 1, lines 3-4), and the
    model's condition with some dropped for guidance, as keyword arguments; all on the CPU."""

    t: torch.Tensor  # (B,)
    eps: torch.Tensor  # (B, C, H, W)
    condition: dict[str, torch.Tensor]  # {} or {"class_labels": (B,)} or {"tokens": (B, L)}

    def __getitem__(self, rows: slice) -> "NoiseDraws":
        """The draws of some rows of the batch (a process's or a micro-batch's share)."""
        return NoiseDraws(self.t[rows], self.eps[rows], {name: c[rows] for name, c in self.condition.items()})


def draw_noise(run: Run, schedule: NoiseSchedule | None, x0: torch.Tensor, conditions: torch.Tensor) -> NoiseDraws:
    """Draw t, eps and the dropped conditions for a whole batch, in this order, from the run's generator.

    Every process draws them for the whole batch and keeps its rows, so an image gets the same draws however the
    batch is split; the generator is on the CPU, so the draws are the same on any device. A rectified-flow model
    (schedule None) draws a flow time t in [0, 1] as config.diffusion.time_sampling says."""
    if schedule is None:
        # $t \sim \pi(t)$: uniform, or logit-normal (Esser et al. 2024, sec. 3.1)
        t = sample_flow_times(len(x0), run.generator, run.config.diffusion.time_sampling)  # (B,)
    else:
        # $t \sim \mathrm{Uniform}\{0, \dots, T-1\}$
        t = torch.randint(0, schedule.T, (len(x0),), generator=run.generator)  # (B,)
    # $\epsilon \sim \mathcal{N}(0, I)$
    eps = torch.randn(x0.shape, generator=run.generator)  # (B, C, H, W)
    condition = conditioning_inputs(run.config, conditions, run.generator, torch.device("cpu"))
    return NoiseDraws(t, eps, condition)


def diffusion_loss(run: Run, schedule: NoiseSchedule | None, x0: torch.Tensor, conditions: torch.Tensor,
                   device: torch.device, draws: NoiseDraws | None = None) -> torch.Tensor:
    """The loss of one batch: DDPM's Algorithm 1, lines 2-5, with a choice of target and Min-SNR weights
    (for a rectified-flow model, whose schedule is None: `flow_loss`).

    conditions: class labels (B,) or token ids (B, L), as the run's model is conditioned. draws: the batch's t, eps
    and condition (`draw_noise`); None: drawn now from the run's generator.

    The random draws and the noising happen on the CPU with the run's generator (the same for any device);
    only the network runs on `device`, through run.forward_model (several processes: DistributedDataParallel).
    """
    prediction = run.config.diffusion.prediction
    # 1-2. a random step and noise for each image (Algorithm 1, lines 3-4), the condition, sometimes dropped
    draws = draw_noise(run, schedule, x0, conditions) if draws is None else draws
    if prediction == FLOW:
        return flow_loss(run, x0, draws, device)
    # 3. the noisy image, eq. (4), and what the network should answer
    x_t = q_sample(schedule, x0, draws.t, draws.eps)
    target = training_target(prediction, x0, draws.eps, schedule.alpha_bar[draws.t])
    # 4. $\| \mathrm{target} - f_\theta(x_t, t) \|^2$, averaged per image, weighted, averaged over the batch
    condition = {name: value.to(device) for name, value in draws.condition.items()}
    output = run.forward_model(x_t.to(device), draws.t.to(device), **condition)
    per_image = ((output.float() - target.to(device)) ** 2).mean(dim=(1, 2, 3))  # (B, C, H, W) -> (B,), in float32
    weights = loss_weights(schedule.snr[draws.t], run.config.min_snr_gamma, prediction).to(device)  # (B,)
    return (weights * per_image).mean()


def flow_loss(run: Run, x0: torch.Tensor, draws: NoiseDraws, device: torch.device) -> torch.Tensor:
    """The loss of one batch of a rectified-flow model: conditional flow matching on the straight path
    (Lipman et al. 2023, sec. 4.1; Liu et al. 2023), at the batch's flow times draws.t (`draw_noise`)."""
    # 3. the point of the straight path, and its velocity
    x_t = linear_path(x0, draws.eps, draws.t)
    target = velocity_target(x0, draws.eps)
    # 4. $\| (\epsilon - x_0) - u_\theta(x_t, t) \|^2$, averaged
    condition = {name: value.to(device) for name, value in draws.condition.items()}
    output = run.forward_model(x_t.to(device), draws.t.to(device), **condition)
    return ((output.float() - target.to(device)) ** 2).mean()


def train_step(run: Run, schedule: NoiseSchedule, images: torch.Tensor, conditions: torch.Tensor,
               device: torch.device) -> float:
    """One optimizer step of a diffusion model: batch, draws, loss (`diffusion_loss`), `optimizer_step`. Returns the
    batch's loss.

    conditions: class labels (N,) or token ids (N, L), one per image of the training set. Every process takes the
    same batch and draws; `optimizer_step` asks for the loss of this process's rows, micro-batch by micro-batch."""
    x0, y = next_batch(run, images, conditions)
    draws = draw_noise(run, schedule, x0, y)
    value = optimizer_step(run, lambda rows: diffusion_loss(run, schedule, x0[rows], y[rows], device, draws[rows]))
    run.losses.append(value)
    return value


def train(config: TrainConfig, out: Path | str, resume: bool = False, device: torch.device | str = "auto",
          command: str = "", progress: bool = True) -> Run:
    """Train a diffusion model in `train_loop`; checkpoint (state, EMA model) on the way and at the end, and write a
    sample grid every config.sample_every_steps steps and at the end; keep the EMA model at each step of
    config.keep_models_at_steps in out/models/step_NNNNNN.{safetensors,json}.

    Started by torchrun, every process runs this and computes its share of each batch
    (`minidiff.training.distributed`); the main process alone writes."""
    check_flow_run(config)
    out, processes = Path(out), start(device)
    device = processes.device
    if not resume and (out / "train_state.json").exists():
        raise FileExistsError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")
    with main_first(processes):  # the main process encodes and caches latents once, the others read them
        images, conditions = load_images(config, cache_dir=out)
    schedule = config.diffusion.noise_schedule()
    run = resume_run(out, config, device, command, processes) if resume else new_run(config, device, command, processes)
    if not resume and config.encoder is not None and config.encoder.kind == "clip":
        copy_clip_text_tower(run)

    def take_step(run: Run) -> dict[str, str]:
        return {"loss": f"{train_step(run, schedule, images, conditions, device):.4f}"}

    def sample_and_keep(run: Run) -> None:
        if config.sample_every_steps and run.step % config.sample_every_steps == 0:
            write_sample_grid(run, schedule, out, device)
        if run.step in config.keep_models_at_steps:  # a learning curve's points
            save_model(run, out / "models" / f"step_{run.step:06d}", device)

    train_loop(run, out, take_step, lambda run: save_run(run, out, device), sample_and_keep, progress)
    if processes.is_main:
        write_sample_grid(run, schedule, out, device)
    wait_for_main(processes)
    return run


def copy_clip_text_tower(run: Run) -> None:
    """Start the encoder of a new run as its CLIP's text tower, frozen, in the model and in its EMA alike; the
    config records the CLIP's sha256, so a resumed or sampled model is known to read that CLIP's vectors. (Stable
    Diffusion v1 reads the frozen text encoder of CLIP ViT-L/14 so; the latent diffusion paper's own text model,
    Rombach et al. 2022, sec. 4.3.1, trained its transformer with the U-Net, as the Shapes text model does.)"""
    weights, sha256 = clip_text_tower(run.config.encoder)
    for model in (run.model, run.ema):
        model.encoder.load_state_dict(weights)
    run.config.encoder.clip_sha256 = sha256


def check_flow_run(config: TrainConfig) -> None:
    """Refuse what a rectified-flow run does not do (yet): Min-SNR weights, which are weights over a VP schedule's
    steps, and latent models, whose sample grids go through the pipeline's VP samplers."""
    if config.diffusion.prediction != FLOW:
        return
    if config.min_snr_gamma is not None:
        raise ValueError("min_snr_gamma weights a VP model's loss by its steps' SNR; a rectified-flow model "
                         "(prediction 'flow') trains with plain MSE: set min_snr_gamma to None (null in JSON)")
    if config.data in LATENT_DATASETS:
        raise ValueError("a rectified-flow model trains on pixels here (data 'mnist5k' or 'shapes'); latent "
                         "models sample through the pipeline's VP samplers, so use prediction 'v' for them")


def grid_sampler(config: TrainConfig) -> str:
    """The sampler of the training grids: DDPM for a VP model, Euler in t for a rectified-flow model."""
    return "flow_euler" if config.diffusion.prediction == FLOW else "ddpm"


def write_sample_grid(run: Run, schedule: NoiseSchedule, out: Path, device: torch.device) -> Path:
    """Draw a grid with the EMA weights, always from the same noise, into out/samples/: two of each class, or
    (Shapes) twelve conditions, as attributes or full captions, (emoji) twelve prompts, decoded when the model works
    in latent space."""
    config, generator = run.config, torch.Generator().manual_seed(run.config.seed)
    if config.data in LATENT_DATASETS:
        autoencoder, autoencoder_info = load_autoencoder(config.autoencoder, device)
        if config.data == "emoji_latents":
            tokens = prompt_tokens(list(EMOJI_GRID_PROMPTS), config.encoder)
        else:
            tokens = condition_tokens(grid_attributes(), config.encoder.kind)
        x0 = sample_shapes(run.ema, schedule, config.diffusion.prediction, autoencoder, autoencoder_info.scale_factor,
                           tokens, "ddpm", config.sample_grid_steps, generator=generator, device=device)
        columns = 6
    elif config.data == "shapes":
        tokens = condition_tokens(grid_attributes(), config.encoder.kind).to(device)
        x0 = sample(grid_sampler(config), token_denoiser(run.ema, tokens), (len(tokens), *config.image_shape()),
                    schedule, config.diffusion.prediction, steps=config.sample_grid_steps, generator=generator,
                    device=device)
        columns = 6
    else:
        num_classes = config.network.num_classes
        n = 2 * num_classes if num_classes is not None else 16
        class_labels = torch.arange(n, device=device) % num_classes if num_classes is not None else None
        x0 = sample(grid_sampler(config), model_denoiser(run.ema, class_labels=class_labels),
                    (n, *config.image_shape()), schedule, config.diffusion.prediction, steps=config.sample_grid_steps,
                    generator=generator, device=device)
        columns = num_classes or 8
    path = out / "samples" / f"step_{run.step:06d}.png"
    write_png(picture_grid(from_model(x0), columns=columns), path)
    return path
