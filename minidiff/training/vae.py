"""Training the autoencoder: `python -m minidiff train-vae`, in the same loop as every model
(`minidiff.training.run.train_loop`).

    python -m minidiff train-vae --preset shapes --out runs/vae --minutes 25 --threads 1
    python -m minidiff train-vae --out runs/vae --minutes 40 --resume       # carry on to 40 minutes in all
    python -m minidiff train-vae --preset emoji_decoder --out runs/emoji_decoder   # emoji_vae's decoder alone

The run folder holds train_state.json + .safetensors (the one training-state format of `minidiff.training.run`: a
killed run resumes exactly) and, when the run ends, autoencoder.json + .safetensors (a checkpoint
`minidiff.models.load_autoencoder` reads, with its scale factor and measured PSNR). Training images are Shapes of
the train split, rendered once from the seed, and the metrics are measured on the held-out split, whose colour/shape
pairs the autoencoder never saw; or (data "emoji") the emoji train split, measured on the test images and on both
held-out compositions (`training_images`, `heldout_images`).

With `decoder_from`, only the decoder trains: the encoder is another autoencoder's, copied and frozen
(`freeze_encoder_from`), and the checkpoint keeps that autoencoder's scale factor and records its latent space
(`encoder_of`), so latent models trained on the old autoencoder decode through the new one unchanged.
"""

import math
from pathlib import Path

import torch
from torch import nn

from minidiff.data.emoji import emoji
from minidiff.data.pixels import to_model
from minidiff.data.shapes import shapes
from minidiff.measure.shape_checker import adherence, read_attributes
from minidiff.models import AutoencoderInfo, load_autoencoder, save_autoencoder
from minidiff.nets.autoencoder import Autoencoder, estimate_scale_factor, psnr, reconstruct, vae_loss
from minidiff.training.config import VAETrainConfig
from minidiff.training.distributed import Processes, mean_over_processes, start, wait_for_main
from minidiff.training.run import (
    Run,
    optimizer_step,
    restore_run,
    save_state,
    saved_training_state,
    start_run,
    train_loop,
)


class AutoencoderLoss(nn.Module):
    """The autoencoder with its loss, the module a training step calls: DistributedDataParallel wraps the module
    whose forward pass it follows, and `vae_loss` needs the autoencoder's config besides its outputs."""

    def __init__(self, autoencoder: Autoencoder):
        super().__init__()
        self.autoencoder = autoencoder

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        return vae_loss(self.autoencoder, x, noise=noise)


def freeze_encoder_from(model: Autoencoder, source_name: str) -> None:
    """Copy the encoder of the autoencoder `source_name` (shipped name or path) into `model` and freeze it, so only
    the decoder trains and the latent space stays the source's. The decoder starts from the source's when their
    widths agree (training it further), else from `model`'s fresh weights (a new decoder, e.g. a wider one). Stable
    Diffusion's released autoencoders were improved the same way: a fine-tuned decoder, the encoder untouched.

    Raises ValueError when the source's encoder has another shape than config's."""
    source, _ = load_autoencoder(source_name)
    ours, theirs = model.config, source.config
    encoder_settings = ("in_channels", "latent_channels", "channels", "blocks_per_level", "groups")
    different = [name for name in encoder_settings if getattr(ours, name) != getattr(theirs, name)]
    if different:
        raise ValueError(f"decoder_from {source_name!r}: its encoder differs from the config's in {different}; give "
                         "the autoencoder config the source's encoder settings (only decoder_channels may differ)")
    model.encoder.load_state_dict(source.encoder.state_dict())
    model.encoder.requires_grad_(False)  # no gradient, so AdamW never moves it
    if ours.decoder_widths == theirs.decoder_widths:
        model.decoder.load_state_dict(source.decoder.state_dict())


def new_autoencoder_run(config: VAETrainConfig, device: torch.device, command: str,
                        processes: Processes | None = None) -> Run:
    """Fresh autoencoder weights from config.seed (or, with config.decoder_from, that autoencoder's frozen encoder
    and a decoder to fine-tune), AdamW and the batch generator; no EMA."""
    torch.manual_seed(config.seed)
    model = Autoencoder(config.autoencoder)
    if config.decoder_from is not None:
        freeze_encoder_from(model, config.decoder_from)
    return start_run(config, model, device, command, keep_ema=False, processes=processes, forward=AutoencoderLoss(model))


def vae_step(run: Run, images: torch.Tensor, device: torch.device) -> dict[str, str]:
    """One optimizer step of the autoencoder on a batch drawn at random from `images`; records the reconstruction
    error, and returns the loss, the KL and the reconstruction's PSNR for the progress bar.

    The batch and the latents' noise (the reparameterisation's eps) are drawn for the whole batch on every process,
    from the run's generator; each process computes its rows (`minidiff.training.run.optimizer_step`)."""
    config = run.config.autoencoder
    size = images.shape[-1] // config.downsampling
    index = torch.randint(0, len(images), (run.config.batch_size,), generator=run.generator)
    noise = torch.randn((run.config.batch_size, config.latent_channels, size, size), generator=run.generator)
    parts = []  # each micro-batch's loss, KL and reconstruction error

    def loss_of(rows: slice) -> torch.Tensor:
        loss, numbers = run.forward_model(images[index[rows].to(device)], noise[rows].to(device))
        parts.append(numbers)
        return loss

    optimizer_step(run, loss_of)
    shown = {name: mean_over_processes(sum(p[name] for p in parts) / len(parts), run.processes) for name in parts[0]}
    run.losses.append(shown["reconstruction"])
    reconstruction_psnr = 10 * math.log10(4 / max(shown["reconstruction"], 1e-12))  # images span [-1, 1]: peak 2
    return {"loss": f"{shown['loss']:.5f}", "kl": f"{shown['kl']:.0f}", "psnr": f"{reconstruction_psnr:.1f}"}


def measure(model: Autoencoder, images: torch.Tensor) -> float:
    """Mean PSNR (dB) of the deterministic round trip over `images`."""
    return psnr(reconstruct(model, images), images).mean().item()


def attributes_kept(model: Autoencoder, images: torch.Tensor) -> dict[str, float]:
    """Share of round trips whose colour, shape, size and position (shape_checker) read as the original's do."""
    originals = read_attributes(images.cpu())
    return {name: round(share, 4) for name, share in adherence(reconstruct(model, images).cpu(), originals).items()}


def training_images(config: VAETrainConfig) -> torch.Tensor:
    """The autoencoder's training images in [-1, 1] (N, 3, 32, 32): Shapes of the train split, or the emoji's."""
    if config.data == "emoji":
        return to_model(emoji("train").images)
    return to_model(shapes(config.dataset_size, "train", config.seed)[0])


def heldout_images(config: VAETrainConfig) -> dict[str, torch.Tensor]:
    """Images the autoencoder never trained on, by name: the Shapes held-out split (config.eval_images of them), or
    the emoji test images and both held-out compositions."""
    if config.data == "emoji":
        return {split: to_model(emoji(split).images) for split in ("test", "heldout_tone", "heldout_style")}
    return {"heldout": to_model(shapes(config.eval_images, "heldout", config.seed)[0])}


def write_autoencoder(out: Path, run: Run, train_images: torch.Tensor, device: torch.device) -> AutoencoderInfo:
    """Estimate the scale factor, measure PSNR (train and held-out) and, on Shapes, kept attributes; write the
    checkpoint. On emoji, psnr_heldout_db is the test images' (psnr_heldout_tone_db, psnr_heldout_style_db beside)."""
    model, config = run.model, run.config
    model.eval()
    heldout = {name: images.to(device) for name, images in heldout_images(config).items()}
    metrics = {f"psnr_{name}_db": round(measure(model, images), 2) for name, images in heldout.items()}
    metrics = {"psnr_heldout_db": metrics.pop(f"psnr_{next(iter(heldout))}_db"), **metrics}
    metrics["psnr_train_db"] = round(measure(model, train_images[:config.eval_images]), 2)
    if config.data == "shapes":
        metrics["heldout_attributes_kept"] = attributes_kept(model, heldout["heldout"])
    metrics.update({"eval_images": {name: len(images) for name, images in heldout.items()},
                    "heldout_seed": config.seed, "measured_by": run.command.split("\n")[-1]})  # the last session
    n = len(train_images) if config.data == "emoji" else config.dataset_size
    data = {"name": config.data, "split": "train", "n": n, "seed": config.seed}
    scale_factor, encoder_of = estimate_scale_factor(model, train_images[:2000]), ""
    if config.decoder_from is not None:  # the source's encoder, so its latent space and its scale factor
        _, source = load_autoencoder(config.decoder_from)
        scale_factor, encoder_of, data["decoder_from"] = source.scale_factor, source.latent_space, config.decoder_from
    info = AutoencoderInfo(
        config=config.autoencoder.to_dict(), scale_factor=scale_factor, command=run.command, seed=config.seed,
        device=str(device), training_minutes=round(run.minutes, 2), step=run.step, data=data, metrics=metrics,
        encoder_of=encoder_of)
    save_autoencoder(out / "autoencoder", model, info)
    model.train()
    return info


def train_vae(config: VAETrainConfig, out: Path | str, resume: bool = False, device: str = "auto",
              command: str = "", progress: bool = True) -> AutoencoderInfo | None:
    """Train until config.steps or config.minutes (earlier sessions included), then write the checkpoint.

    Started by torchrun, every process trains its share of each batch (`minidiff.training.distributed`); the main
    process alone measures and writes the checkpoint (the others return None)."""
    out, processes = Path(out), start(device)
    device = processes.device
    if not resume and (out / "train_state.json").exists():
        raise FileExistsError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")
    images = training_images(config).to(device)  # (N, 3, 32, 32)
    run = new_autoencoder_run(config, device, command, processes)
    if resume:
        restore_run(run, saved_training_state(out), out)
    train_loop(run, out, lambda run: vae_step(run, images, device), lambda run: save_state(run, out),
               progress=progress)
    info = write_autoencoder(out, run, images, device) if processes.is_main else None
    wait_for_main(processes)
    return info
