"""`python -m minidiff evaluate`: how good is a class-conditional digit model, measured.

Two numbers, both from the shipped digit classifier (`minidiff.metrics`), which never saw a generated digit:
- class accuracy: the share of samples asked for digit k that the classifier reads as k;
- Fréchet distance between the classifier's features of the samples and of real digits, printed beside
  the real-vs-real baseline at the same n (two disjoint sets of real digits), the floor any generator is
  compared against.

The same function serves the sampler race (benchmarks/) and the chapters: any sampler, any steps, any guidance.
"""

import argparse
import json
import shlex
import time

import torch

from minidiff.checkpoint import load_model, record_metrics, resolve_device
from minidiff.data import mnist5k, to_model
from minidiff.guidance import guided_denoiser
from minidiff.metrics import class_accuracy, digit_features, frechet_distance, real_vs_real_baseline
from minidiff.samplers import SAMPLERS, model_denoiser


def balanced_labels(n: int) -> torch.Tensor:
    """n labels cycling 0, 1, ..., 9, 0, 1, ...: every digit asked for equally often."""
    return torch.arange(n) % 10


@torch.inference_mode()
def generate_digits(model, info, labels: torch.Tensor, sampler: str = "ddpm", steps: int | None = None,
                    guidance: float | None = None, seed: int = 0, batch_size: int = 250,
                    device: torch.device | str = "cpu") -> tuple[torch.Tensor, dict]:
    """Sample one digit per label -> images (N, 1, 28, 28) in [-1, 1], and {"nfe", "seconds"} for the whole set.

    Batches are seeded seed, seed + 1, ...: the same call gives the same digits. The noise is drawn on the CPU and
    moved to `device`, so a GPU starts from exactly the noise a CPU does.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {sorted(SAMPLERS)}")
    schedule, prediction = info.noise_schedule(), info.diffusion["prediction"]
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
        x0 = SAMPLERS[sampler](denoiser, (len(batch_labels), *shape), schedule, prediction, steps=steps,
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


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this measurement, every setting spelled out."""
    words = ["python", "-m", "minidiff", "evaluate", "--model", str(args.model), "--n", str(args.n),
             "--sampler", args.sampler, "--seed", str(args.seed), "--device", args.device]
    for option in ("steps", "guidance", "threads"):
        if getattr(args, option) is not None:
            words += [f"--{option}", str(getattr(args, option))]
    return shlex.join(words)


def run(args: argparse.Namespace) -> dict:
    """Sample args.n digits, measure them, print the figures, and record them in the checkpoint's JSON."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model, info = load_model(args.model, device)
    labels = balanced_labels(args.n)
    images, cost = generate_digits(model, info, labels, args.sampler, args.steps, args.guidance, args.seed,
                                   device=device)
    result = {**digit_quality(images, labels, args.seed), **cost,
              "real_vs_real_frechet_distance": real_vs_real_baseline(args.n, seed=args.seed)}
    settings = {"n": args.n, "sampler": args.sampler, "steps": args.steps, "guidance": args.guidance,
                "seed": args.seed, "device": str(device)}
    name = f"{args.sampler}_{args.steps or 'all'}_steps" + (f"_guidance_{args.guidance}" if args.guidance else "")
    report = {**settings, **result, "command": command_line(args)}
    print(json.dumps(report, indent=1))
    if args.record:
        record_metrics(args.model, {name: report})
        print(f"recorded under metrics[{name!r}] in {args.model}'s JSON")
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the evaluate command's options."""
    parser.add_argument("--model", default="mnist", help="shipped checkpoint name or path (default: mnist)")
    parser.add_argument("--n", type=int, default=1000, help="digits to sample, labels cycling 0..9 (default: 1000)")
    parser.add_argument("--sampler", default="ddpm", choices=sorted(SAMPLERS))
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: all T)")
    parser.add_argument("--guidance", type=float, default=None, help="classifier-free guidance w (default: off)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--record", action="store_true", help="write the figures into the checkpoint's metrics")
    parser.set_defaults(run=run)
