"""Training the autoencoder: `python -m minidiff train-vae`. A plain loop, resumable, like `minidiff.train`.

    python -m minidiff train-vae --preset shapes --out runs/vae --minutes 25 --threads 1
    python -m minidiff train-vae --out runs/vae --minutes 40 --resume       # carry on to 40 minutes in all

The run folder holds autoencoder.json + .safetensors (a checkpoint `load_autoencoder` reads, with its scale
factor and measured PSNR) and train_state.json + .safetensors (weights, optimizer, step, RNG states: a killed run
resumes exactly). Training images are Shapes of the train split, rendered once from the seed; the metrics are
measured on the held-out split, whose colour/shape pairs the autoencoder never saw.
"""

import argparse
import shlex
from pathlib import Path

import torch

from minidiff.files.checkpoint import read_tensors_and_json
from minidiff.models import AutoencoderInfo
from minidiff.training.vae import PRESETS, VAETrainConfig, train_vae


def run(args: argparse.Namespace) -> AutoencoderInfo:
    """The train-vae command."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.resume:
        config = VAETrainConfig(**read_tensors_and_json(Path(args.out) / "train_state")[1]["config"])
    else:
        config = PRESETS[args.preset]()
        config.seed = args.seed
    if args.steps is not None or args.minutes is not None:
        config.steps, config.minutes = args.steps, args.minutes
    words = ["python", "-m", "minidiff", "train-vae", "--out", str(args.out)]
    words += ["--resume"] if args.resume else ["--preset", args.preset, "--seed", str(args.seed)]
    for option in ("steps", "minutes", "threads"):
        if getattr(args, option) is not None:
            words += [f"--{option}", str(getattr(args, option))]
    info = train_vae(config, args.out, args.resume, args.device, shlex.join(words), progress=not args.quiet)
    print(f"wrote {Path(args.out) / 'autoencoder'}.json: scale factor {info.scale_factor:.4f}, {info.metrics}")
    return info


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the train-vae command's options."""
    parser.add_argument("--preset", choices=sorted(PRESETS), default="shapes")
    parser.add_argument("--out", required=True, help="run folder, e.g. runs/vae")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, help="train until this many steps in all")
    budget.add_argument("--minutes", type=float, help="train until this many minutes in all")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)
