"""Digits drawn and judged: sample a class-conditional digit model, then score the samples with the digit classifier.

`generate_digits` draws one digit per label with any sampler, number of steps and guidance
(`minidiff.diffusion.samplers.sample`; a rectified-flow model with the flow samplers, `FLOW_SAMPLERS`), in batches
seeded seed, seed + 1, ..., and reports the network evaluations per image and the seconds taken; `balanced_labels`
asks for every digit equally often. `digit_quality` gives two numbers, both from the shipped digit classifier
(`minidiff.measure.metrics`), which never saw a generated digit:
- class accuracy: the share of samples asked for digit k that the classifier reads as k;
- Fréchet distance between the classifier's features of the samples and of as many real digits (Heusel et al. 2017,
  eq. 6), to be read beside the real-vs-real baseline at the same n (`minidiff.measure.metrics.real_vs_real_baseline`).

The same functions serve `python -m minidiff evaluate` (`minidiff.cli.evaluate`), the sampler race
(`minidiff.measure.race`) and the chapters: any sampler, any steps, any guidance.
"""

import time

import torch

from minidiff.data.digits import mnist5k
from minidiff.data.pixels import to_model
from minidiff.diffusion.guidance import guided_denoiser
from minidiff.diffusion.loop import model_denoiser
from minidiff.diffusion.samplers import FLOW_SAMPLERS, SAMPLERS, sample
from minidiff.measure.metrics import class_accuracy, digit_features, frechet_distance


def balanced_labels(n: int) -> torch.Tensor:
    """n labels cycling 0, 1, ..., 9, 0, 1, ...: every digit asked for equally often."""
    return torch.arange(n) % 10


@torch.inference_mode()
def generate_digits(model, info, labels: torch.Tensor, sampler: str = "ddpm", steps: int | None = None,
                    guidance: float | None = None, seed: int = 0, batch_size: int = 250,
                    device: torch.device | str = "cpu", clip_x0: bool | None = None) -> tuple[torch.Tensor, dict]:
    """Sample one digit per label -> images (N, 1, 28, 28) in [-1, 1], and {"nfe", "seconds"} for the whole set.

    clip_x0: clip each step's predicted x0 to [-1, 1] (True), or not: the plain ODE or SDE (False); None: the
    sampler's own default (on for the VP samplers, off for the flow samplers).
    Batches are seeded seed, seed + 1, ...: the same call gives the same digits. The noise is drawn on the CPU and
    moved to `device`, so a GPU starts from exactly the noise a CPU does. steps None: all T steps of a VP model, the
    flow sampler's own default for a rectified-flow model (prediction 'flow', sampled with a flow_* sampler).
    """
    if sampler not in SAMPLERS and sampler not in FLOW_SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {sorted(SAMPLERS) + sorted(FLOW_SAMPLERS)}")
    schedule, prediction = info.noise_schedule(), info.diffusion["prediction"]
    options = {} if steps is None else {"steps": steps}
    if clip_x0 is not None:
        options["clip_x0"] = clip_x0
    shape = tuple(info.data["image_shape"])
    images, nfe, start = [], 0, time.perf_counter()
    for index, batch_labels in enumerate(labels.split(batch_size)):
        batch_labels = batch_labels.to(device)
        if guidance is None:
            denoiser = model_denoiser(model, class_labels=batch_labels)
        else:
            denoiser = guided_denoiser(model, guidance, class_labels=batch_labels)
        generator = torch.Generator().manual_seed(seed + index)  # on the CPU: the same noise on any device
        nfe_so_far = []  # only the count: keeping all 1000 steps of 250 digits would take gigabytes
        x0 = sample(sampler, denoiser, (len(batch_labels), *shape), schedule, prediction, **options,
                    generator=generator, device=device, callback=lambda step: nfe_so_far.append(step.nfe))
        nfe = nfe_so_far[-1]  # network evaluations for one batch = for one image
        images.append(x0.clamp(-1, 1).cpu())
    return torch.cat(images), {"nfe": nfe, "seconds": time.perf_counter() - start}


def digit_quality(images: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> dict:
    """Class accuracy and Fréchet distance to as many real digits (chosen with `seed`)."""
    real, _ = mnist5k()
    pick = torch.randperm(len(real), generator=torch.Generator().manual_seed(seed))[: len(images)]
    real_features = digit_features(to_model(real[pick.numpy()]))
    return {
        "class_accuracy": class_accuracy(images, labels),
        "frechet_distance": frechet_distance(digit_features(images), real_features),
    }
