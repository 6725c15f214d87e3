r"""Latent diffusion: the same diffusion, run on an autoencoder's latents instead of on pixels.

Rombach et al. 2022 ("High-Resolution Image Synthesis with Latent Diffusion Models"), sec. 3: first train an
autoencoder ($\mathcal E$, $\mathcal D$) that compresses an image $x$ to a small latent $z = \mathcal E(x)$; then
train the diffusion model on $z$ with the very same objective (their eq. 2 is DDPM's loss with $x$ replaced by
$z$), sample a $z_0$ with the very same samplers, and decode it, $\tilde x = \mathcal D(z_0)$.

Here a 32 x 32 x 3 Shapes image becomes an 8 x 8 x 4 latent: 12 times fewer numbers, and a U-Net over 8 x 8 costs
far less per image than one over 32 x 32. The latents are multiplied by the autoencoder's scale factor so that
they have unit variance, the scale the noise schedule assumes (Rombach et al. 2022, sec. 4.3.2 and appendix G).

Nothing here is a copy of pixel-space code: `minidiff.train` trains on the latents (data "shapes_latents"),
`minidiff.samplers` samples them; this module only encodes once (and caches), and decodes.
"""

from dataclasses import dataclass
from pathlib import Path

import safetensors.torch
import torch
from tqdm import tqdm

from minidiff.autoencoder import Autoencoder, load_autoencoder
from minidiff.checkpoint import CheckpointInfo, atomic_write_bytes
from minidiff.conditioning import ConditionedUNet, condition_tokens, token_denoiser, training_captions
from minidiff.data import shapes, to_model
from minidiff.samplers import SAMPLERS, DenoisingStep
from minidiff.schedule import NoiseSchedule
from minidiff.shapes import COLOURS, POSITIONS, SHAPES

LATENT_SIZE = 8  # a 32 x 32 image is 8 x 8 in latent space: the autoencoder downsamples twice by 2


@torch.inference_mode()
def encode_images(autoencoder: Autoencoder, images: torch.Tensor, scale_factor: float,
                  batch_size: int = 500) -> torch.Tensor:
    r"""Images (N, 3, 32, 32) in [-1, 1] -> scaled latents (N, 4, 8, 8): $z = s \cdot \mu_{\mathcal E}(x)$.

    The encoder's mean, not a sample: the latent the decoder reconstructs best. A progress bar for big sets.
    """
    device = next(autoencoder.parameters()).device
    batches = images.split(batch_size)
    latents = [autoencoder.encode_mean(batch.to(device)).cpu() for batch in tqdm(batches, desc="encoding",
                                                                                  disable=len(batches) < 4)]
    return torch.cat(latents) * scale_factor  # (N, 4, 8, 8)


@torch.inference_mode()
def decode_latents(autoencoder: Autoencoder, z0: torch.Tensor, scale_factor: float) -> torch.Tensor:
    r"""Scaled latents (N, 4, 8, 8) -> images (N, 3, 32, 32) in [-1, 1]: $\tilde x = \mathcal D(z / s)$, clipped."""
    device = next(autoencoder.parameters()).device
    return autoencoder.decode(z0.to(device) / scale_factor).clamp(-1, 1)


def cache_path(cache_dir: Path, autoencoder_sha256: str, n: int, seed: int) -> Path:
    """Where the latents of n Shapes (seed) under one autoencoder (its weights' sha256) are kept."""
    return Path(cache_dir) / f"latents_{autoencoder_sha256[:12]}_n{n}_seed{seed}.safetensors"


def encoded_shapes(autoencoder_name: str, n: int, seed: int = 0, cache_dir: Path | str | None = None,
                   condition: str = "attributes") -> tuple[torch.Tensor, torch.Tensor]:
    """The training set of latent diffusion: n Shapes of the train split, encoded once.

    Returns scaled latents z0 (n, 4, 8, 8) and their condition's tokens: attribute tokens (n, 5) for condition
    "attributes", caption words (n, 10) for "text" (`training_captions`: full or shortened, seeded). With
    cache_dir, the latents are saved there (safetensors, atomically) and read back next time: the file name names
    the autoencoder's weights, so a new autoencoder never meets old latents.
    """
    images, _, attributes = shapes(n, "train", seed)
    captions = training_captions(attributes, seed) if condition == "text" else None
    tokens = condition_tokens(attributes, condition, captions)
    autoencoder, info = load_autoencoder(autoencoder_name)
    path = None if cache_dir is None else cache_path(Path(cache_dir), info.tensors_sha256, n, seed)
    if path is not None and path.exists():
        return safetensors.torch.load_file(path)["z0"], tokens
    z0 = encode_images(autoencoder, to_model(images), info.scale_factor)  # (n, 3, 32, 32) -> (n, 4, 8, 8)
    if path is not None:
        atomic_write_bytes(path, safetensors.torch.save({"z0": z0.contiguous()}))
    return z0, tokens


def latent_data_info(autoencoder_name: str) -> dict:
    """What a latent model's checkpoint records about its data: the autoencoder (name, weights' sha256) and the
    scale factor it was trained with, so sampling decodes with the same one."""
    _, info = load_autoencoder(autoencoder_name)
    return {"autoencoder": str(autoencoder_name), "autoencoder_sha256": info.tensors_sha256,
            "scale_factor": info.scale_factor}


def autoencoder_for(info: CheckpointInfo, device: torch.device | str = "cpu") -> tuple[Autoencoder, float]:
    """The autoencoder a latent model was trained with, and its scale factor; an error if its weights changed."""
    autoencoder, autoencoder_info = load_autoencoder(info.data["autoencoder"], device)
    if autoencoder_info.tensors_sha256 != info.data["autoencoder_sha256"]:
        raise ValueError(f"the autoencoder {info.data['autoencoder']!r} is not the one this model was trained with "
                         "(its weights' sha256 differs); restore that autoencoder or retrain the latent model")
    return autoencoder, info.data["scale_factor"]


@dataclass
class DecodedStep:
    """One sampler step in latent space, with its predicted clean latent decoded to an image."""

    latent: DenoisingStep  # x_t, eps, x0, x_prev: all latents (B, 4, 8, 8)
    x0_image: torch.Tensor  # (B, 3, 32, 32) in [-1, 1]: D(x0 / scale), what the model thinks it is drawing


@torch.inference_mode()
def sample_shapes(model: ConditionedUNet, schedule: NoiseSchedule, prediction: str, autoencoder: Autoencoder,
                  scale_factor: float, tokens: torch.Tensor, sampler: str = "dpm++", steps: int | None = 20,
                  guidance: float | None = None, generator: torch.Generator | None = None, callback=None,
                  device: torch.device | str = "cpu", negative_tokens: torch.Tensor | None = None,
                  rescale: float = 0.0, **sampler_options) -> torch.Tensor:
    """Draw one image per row of tokens (B, L): sample latents with any sampler, then decode -> (B, 3, 32, 32).

    guidance, negative_tokens, rescale: classifier-free guidance, as `token_denoiser` takes them.
    callback, if given, receives a `DecodedStep` at every step. x0 is not clipped: latents are not in [-1, 1].
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {sorted(SAMPLERS)}")
    negative_tokens = None if negative_tokens is None else negative_tokens.to(device)
    denoiser = token_denoiser(model, tokens.to(device), guidance, rescale, negative_tokens)

    def report(step: DenoisingStep) -> None:
        callback(DecodedStep(step, decode_latents(autoencoder, step.x0, scale_factor)))
    shape = (len(tokens), model.config.in_channels, LATENT_SIZE, LATENT_SIZE)  # (B, 4, 8, 8)
    z0 = SAMPLERS[sampler](denoiser, shape, schedule, prediction, steps=steps, generator=generator, device=device,
                           callback=report if callback else None, clip_x0=False, **sampler_options)
    return decode_latents(autoencoder, z0, scale_factor)


def grid_attributes() -> list[dict]:
    """The 12 conditions of a training run's sample grid: each colour as a small and a large shape, shapes and
    places varying, so one glance shows whether colour, shape, size and position are followed."""
    colours, places = list(COLOURS), list(POSITIONS)
    return [{"colour": colours[i % 6], "shape": SHAPES[i % 3], "size": ("small", "large")[i // 6],
             "position": places[i % 5]} for i in range(12)]
