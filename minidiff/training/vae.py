"""Training the autoencoder: `python -m minidiff train-vae`. A plain loop, resumable, like `minidiff.train`.

    python -m minidiff train-vae --preset shapes --out runs/vae --minutes 25 --threads 1
    python -m minidiff train-vae --out runs/vae --minutes 40 --resume       # carry on to 40 minutes in all

The run folder holds autoencoder.json + .safetensors (a checkpoint `load_autoencoder` reads, with its scale
factor and measured PSNR) and train_state.json + .safetensors (weights, optimizer, step, RNG states: a killed run
resumes exactly). Training images are Shapes of the train split, rendered once from the seed; the metrics are
measured on the held-out split, whose colour/shape pairs the autoencoder never saw.
"""

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from minidiff.data.pixels import to_model
from minidiff.data.shapes import shapes
from minidiff.files.checkpoint import read_tensors_and_json, with_prefix, without_prefix, write_tensors_and_json
from minidiff.files.device import resolve_device
from minidiff.files.training_state import (
    capture_rng_states,
    flatten_optimizer_state,
    restore_rng_states,
    unflatten_optimizer_state,
)
from minidiff.measure.shape_checker import adherence, read_attributes
from minidiff.models import AutoencoderInfo, save_autoencoder
from minidiff.nets.autoencoder import Autoencoder, AutoencoderConfig, estimate_scale_factor, psnr, vae_loss


@dataclass
class VAETrainConfig:
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    dataset_size: int = 20000  # Shapes of the train split, rendered once
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 100
    grad_clip: float = 1.0
    decay_steps: int = 3000  # the learning rate decays (cosine) to a tenth over this many steps, then stays
    steps: int | None = None
    minutes: float | None = 25.0
    checkpoint_every_minutes: float | None = 5.0
    eval_images: int = 500  # held-out images for the final PSNR
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.autoencoder, dict):
            self.autoencoder = AutoencoderConfig.from_dict(self.autoencoder)


PRESETS = {
    "shapes": lambda: VAETrainConfig(),  # the shipped shapes_vae
    "tiny": lambda: VAETrainConfig(autoencoder=AutoencoderConfig(channels=(8, 8, 8), groups=4), dataset_size=64,
                                   batch_size=16, warmup_steps=3, decay_steps=12, steps=12, minutes=None,
                                   checkpoint_every_minutes=None, eval_images=16),  # seconds: for tests
}


def learning_rate(config: VAETrainConfig, step: int) -> float:
    """Linear warm-up, then a cosine decay to a tenth over config.decay_steps (Loshchilov & Hutter 2017).

    The schedule does not depend on the budget (steps or minutes), so a run cut short and resumed is the same run.
    """
    warm = min(1.0, (step + 1) / config.warmup_steps)
    progress = min(step, config.decay_steps) / config.decay_steps
    # $\eta_s = \eta\,(0.55 + 0.45 \cos(\pi s / S))$: from $\eta$ down to $\eta / 10$
    return config.lr * warm * (0.55 + 0.45 * math.cos(math.pi * progress))


def save_state(out: Path, model: Autoencoder, optimizer, generator: torch.Generator, step: int, losses: list,
               minutes: float, config: VAETrainConfig, command: str) -> None:
    """All that resuming needs, in one tensors + JSON pair, written atomically."""
    optimizer_tensors, optimizer_rest = flatten_optimizer_state(optimizer.state_dict())
    rng_tensors, rng_rest = capture_rng_states()
    tensors = {**with_prefix("model", model.state_dict()), **with_prefix("optimizer", optimizer_tensors),
               **with_prefix("rng", rng_tensors), "generator": generator.get_state()}
    meta = {"kind": "vae_train_state", "step": step, "losses": losses, "minutes": minutes,
            "config": asdict(config), "command": command, "optimizer": optimizer_rest, "rng": rng_rest}
    write_tensors_and_json(out / "train_state", tensors, meta)


def reconstruct(model: Autoencoder, images: torch.Tensor) -> torch.Tensor:
    """The deterministic round trip decode(encode_mean(x)), clipped to [-1, 1], in batches."""
    with torch.inference_mode():
        return torch.cat([model.decode(model.encode_mean(batch)).clamp(-1, 1) for batch in images.split(250)])


def measure(model: Autoencoder, images: torch.Tensor) -> float:
    """Mean PSNR (dB) of the deterministic round trip over `images`."""
    return psnr(reconstruct(model, images), images).mean().item()


def attributes_kept(model: Autoencoder, images: torch.Tensor) -> dict[str, float]:
    """Share of round trips whose colour, shape, size and position (shape_checker) read as the original's do."""
    originals = read_attributes(images.cpu())
    return {name: round(share, 4) for name, share in adherence(reconstruct(model, images).cpu(), originals).items()}


def finish(out: Path, model: Autoencoder, config: VAETrainConfig, train_images: torch.Tensor, step: int,
           minutes: float, command: str, device: torch.device) -> AutoencoderInfo:
    """Estimate the scale factor, measure PSNR (train and held-out) and kept attributes, write the checkpoint."""
    model.eval()
    heldout, _, _ = shapes(config.eval_images, "heldout", config.seed)
    heldout = to_model(heldout).to(device)
    metrics = {"psnr_heldout_db": round(measure(model, heldout), 2),
               "psnr_train_db": round(measure(model, train_images[:config.eval_images]), 2),
               "heldout_attributes_kept": attributes_kept(model, heldout),
               "eval_images": config.eval_images, "heldout_seed": config.seed,
               "measured_by": command.split("\n")[-1]}  # the last session measured
    info = AutoencoderInfo(
        config=config.autoencoder.to_dict(), scale_factor=estimate_scale_factor(model, train_images[:2000]),
        command=command, seed=config.seed, device=str(device), training_minutes=round(minutes, 2), step=step,
        data={"name": "shapes", "split": "train", "n": config.dataset_size, "seed": config.seed}, metrics=metrics)
    save_autoencoder(out / "autoencoder", model, info)
    model.train()
    return info


def train_vae(config: VAETrainConfig, out: Path | str, resume: bool = False, device: str = "auto",
              command: str = "", progress: bool = True) -> AutoencoderInfo:
    """Train until config.steps or config.minutes (earlier sessions included), then write the checkpoint."""
    out, device = Path(out), resolve_device(device)
    images = to_model(shapes(config.dataset_size, "train", config.seed)[0]).to(device)  # (N, 3, 32, 32)
    torch.manual_seed(config.seed)
    model = Autoencoder(config.autoencoder).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    generator, step, losses, earlier = torch.Generator().manual_seed(config.seed), 0, [], 0.0
    if resume:
        tensors, meta = read_tensors_and_json(out / "train_state")
        model.load_state_dict(without_prefix("model", tensors))
        optimizer.load_state_dict(unflatten_optimizer_state(without_prefix("optimizer", tensors), meta["optimizer"]))
        generator.set_state(tensors["generator"])
        step, losses, earlier = meta["step"], meta["losses"], meta["minutes"]
        command = f"{meta['command']}\n{command}"
        restore_rng_states(without_prefix("rng", tensors), meta["rng"])
    elif (out / "train_state.json").exists():
        raise FileExistsError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")
    start = saved_at = time.monotonic()

    def minutes() -> float:
        return earlier + (time.monotonic() - start) / 60

    bar = tqdm(total=config.steps, initial=step, disable=not progress, unit="step", desc=str(out))
    while not ((config.steps is not None and step >= config.steps) or
               (config.minutes is not None and minutes() >= config.minutes)):
        index = torch.randint(0, len(images), (config.batch_size,), generator=generator)
        loss, parts = vae_loss(model, images[index.to(device)], generator=None)
        if not math.isfinite(parts["loss"]):
            raise FloatingPointError(f"the loss is {parts['loss']} at step {step}: lower --lr; the last checkpoint "
                                     f"in {out} is kept, continue with --resume")
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        step += 1
        losses.append(parts["reconstruction"])
        rec_psnr = 10 * math.log10(4 / max(parts["reconstruction"], 1e-12))
        bar.update(1)
        bar.set_postfix(loss=f"{parts['loss']:.5f}", kl=f"{parts['kl']:.0f}", psnr=f"{rec_psnr:.1f}")
        if config.checkpoint_every_minutes and (time.monotonic() - saved_at) / 60 >= config.checkpoint_every_minutes:
            save_state(out, model, optimizer, generator, step, losses, minutes(), config, command)
            saved_at = time.monotonic()
    bar.close()
    save_state(out, model, optimizer, generator, step, losses, minutes(), config, command)
    return finish(out, model, config, images, step, minutes(), command, device)
