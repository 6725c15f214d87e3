"""`python -m minidiff train-clip`: train the tiny CLIP on emoji (`minidiff.training.clip`) from a preset, or resume.

    python -m minidiff train-clip --preset emoji --seed 0 --out runs/clip0 --minutes 15 --threads 1
    python -m minidiff train-clip --out runs/clip0 --minutes 30 --resume      # carry on to 30 minutes in all

The emoji model needs two CLIPs, alike but for the seed: the generator's frozen text encoder (seed 0, shipped as
emoji_clip) and the evaluator (seed 1, emoji_evaluator), which `python -m minidiff evaluate-emoji` measures with
and the generator never reads:

    python -m minidiff train-clip --preset emoji --seed 0 --out runs/emoji_clip --minutes 15 --threads 1
    python -m minidiff train-clip --preset emoji --seed 1 --out runs/emoji_evaluator --minutes 15 --threads 1

What the run folder holds, and how a run resumes exactly, is `minidiff.training.run`.
"""

import argparse
import json
import shlex
from pathlib import Path

import torch

from minidiff.cli.options import add_run_arguments
from minidiff.training.clip import CLIP_PRESETS, CLIPTrainConfig, train_clip
from minidiff.training.run import saved_training_state


def train_from_arguments(args: argparse.Namespace) -> dict:
    """The train-clip command: a new run from a preset, or --resume with the run's own saved config. A user's
    mistake is an exception that `python -m minidiff` shows as one line."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.resume:
        config = CLIPTrainConfig.from_dict(saved_training_state(Path(args.out)).config)
    else:
        config = CLIP_PRESETS[args.preset]()
        config.seed = args.seed
    if args.steps is not None or args.minutes is not None:
        config.steps, config.minutes = args.steps, args.minutes
    words = ["python", "-m", "minidiff", "train-clip", "--out", str(args.out)]
    words += ["--resume"] if args.resume else ["--preset", args.preset, "--seed", str(args.seed)]
    for option in ("steps", "minutes", "threads"):
        if getattr(args, option) is not None:
            words += [f"--{option}", str(getattr(args, option))]
    metrics = train_clip(config, args.out, args.resume, args.device, shlex.join(words), progress=not args.quiet)
    print(f"wrote {Path(args.out) / 'clip'}.json: zero-shot retrieval {json.dumps(metrics)}")
    return metrics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the train-clip command's options."""
    parser.add_argument("--preset", choices=sorted(CLIP_PRESETS), default="emoji")
    add_run_arguments(parser, "runs/clip0")
    parser.set_defaults(run=train_from_arguments)
