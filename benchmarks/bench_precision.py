"""Training speed in float32 against mixed precision, on one device: images per second of a course model's real
training steps (the package's own `train_step`: batch, noise draws, loss, backward, clipped AdamW, EMA).

Each variant starts the same run afresh (same seed, same weights, same batches and noise draws), takes --warmup
untimed steps (CUDA's start-up, cuDNN's algorithm search, torch.compile's compilation), then --steps timed ones,
synchronising the device before each clock reading. Variants: fp32, bf16 (autocast), fp16 (autocast with a gradient
scaler), each optionally with channels-last weights ("+cl") and torch.compile ("+compile"). Beside the speed, the
mean loss of the timed steps: mixed precision changes the rounding, not the run, so it should stay close to fp32's.
Writes a JSON after every variant.

    python benchmarks/bench_precision.py --device cuda --config mnist --variants fp32 fp32+cl bf16 bf16+cl fp16+cl
    .venv/bin/python benchmarks/bench_precision.py --config tiny --variants fp32 bf16 --steps 5 --warmup 2   # a CPU try

On the CPU, bf16 autocast is slower than float32 on most processors (no bf16 matrix units); the flags are for GPUs.
"""

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from minidiff.files.atomic import atomic_write_bytes
from minidiff.files.device import device_description, resolve_device
from minidiff.training.config import TrainConfig
from minidiff.training.data import load_images
from minidiff.training.loop import copy_clip_text_tower, train_step
from minidiff.training.presets import PRESETS
from minidiff.training.run import new_run

VARIANTS = ("fp32", "fp32+cl", "bf16", "bf16+cl", "fp16+cl", "bf16+cl+compile")


def variant_config(config: TrainConfig, variant: str) -> TrainConfig:
    """The preset with the variant's execution fields: precision, channels_last, compile."""
    precision, *flags = variant.split("+")
    return dataclasses.replace(config, precision=precision, channels_last="cl" in flags, compile="compile" in flags,
                               sample_every_steps=None, keep_models_at_steps=())


def synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work, so that a clock reading counts it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(config: TrainConfig, device: torch.device, images: torch.Tensor, conditions: torch.Tensor, warmup: int,
            steps: int) -> dict:
    """Train `warmup` then `steps` steps of a fresh run of `config`; the timed steps' images/s and mean loss."""
    run = new_run(config, device, command="benchmarks/bench_precision.py")
    if config.encoder is not None and config.encoder.kind == "clip":
        copy_clip_text_tower(run)
    schedule = config.diffusion.noise_schedule()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(warmup):
        train_step(run, schedule, images, conditions, device)
    synchronize(device)
    start = time.perf_counter()
    losses = [train_step(run, schedule, images, conditions, device) for _ in range(steps)]
    synchronize(device)
    seconds = time.perf_counter() - start
    memory = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"images_per_s": steps * config.batch_size / seconds, "ms_per_step": 1000 * seconds / steps,
            "mean_loss": sum(losses) / steps, "peak_memory_mib": memory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", nargs="+", default=["mnist"], choices=sorted(PRESETS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=100, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps first")
    parser.add_argument("--batch-size", type=int, default=None, help="images per step (default: the preset's)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/precision.json"))
    args = parser.parse_args()
    for variant in args.variants:
        precision, *flags = variant.split("+")
        if precision not in ("fp32", "bf16", "fp16") or not set(flags) <= {"cl", "compile"}:
            parser.error(f"--variants: {variant!r} is not PRECISION[+cl][+compile] with PRECISION fp32, bf16 or fp16")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    results = {"device": device_description(device), "torch": torch.__version__, "steps": args.steps,
               "warmup": args.warmup, "command": "benchmarks/bench_precision.py " + " ".join(sys.argv[1:]), "runs": {}}
    for name in args.config:
        preset = PRESETS[name]()
        if args.batch_size is not None:
            preset = dataclasses.replace(preset, batch_size=args.batch_size)
        with tempfile.TemporaryDirectory() as cache:  # latent presets cache their encoded training set here
            images, conditions = load_images(preset, cache_dir=cache)
        results["runs"][name] = {"batch_size": preset.batch_size}
        for variant in args.variants:
            numbers = measure(variant_config(preset, variant), device, images, conditions, args.warmup, args.steps)
            results["runs"][name][variant] = numbers
            print(f"{name:12s} {variant:16s} {numbers['images_per_s']:9.0f} img/s  {numbers['ms_per_step']:7.2f} "
                  f"ms/step  loss {numbers['mean_loss']:.4f}", flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(args.out, (json.dumps(results, indent=2) + "\n").encode())


if __name__ == "__main__":
    main()
