r"""Training a diffusion model: a plain loop, one idea per function.

Papers followed:
- Ho, Jain & Abbeel 2020 (DDPM): the training loop, Algorithm 1; an EMA of the weights for sampling (appendix B).
- Salimans & Ho 2022: the v target (see `minidiff.diffusion.forward.training_target`).
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
import shlex
from pathlib import Path

import torch

from minidiff.files.checkpoint import CheckpointError
from minidiff.training.config import TrainConfig
from minidiff.training.loop import train
from minidiff.training.presets import PRESETS
from minidiff.training.run import Run, saved_training_state


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
