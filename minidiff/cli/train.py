r"""`python -m minidiff train`: train a diffusion model from a preset, or resume a run exactly.

    python -m minidiff train --config mnist --out runs/mnist --minutes 60     # a new run
    python -m minidiff train --out runs/mnist --minutes 120 --resume         # carry on to 120 minutes in all
    torchrun --standalone --nproc_per_node 4 -m minidiff train --config mnist --out runs/mnist --precision bf16

A new run starts from a preset of `minidiff.training.presets` (--config) and a seed; --resume reads the run's own
config from its train_state.json, and only the budget (--steps or --minutes, earlier sessions included) may change.
Each invocation is recorded with every setting spelled out (`command_line`). The training itself, and the papers it
follows, is `minidiff.training.loop`; what a run folder holds, and how a resumed run takes exactly the steps an
uninterrupted one would have taken, is `minidiff.training.run`. Started by torchrun, the command runs on N processes
(`minidiff.training.distributed`); --accumulate, --precision, --channels-last and --compile say how each step is
computed (`minidiff.cli.execution`).
"""

import argparse
import dataclasses
import shlex
from pathlib import Path

from minidiff.cli.execution import add_execution_arguments, apply_execution_arguments, execution_words, launcher_words
from minidiff.cli.options import add_run_arguments, check_budget, check_seed, use_threads
from minidiff.training import distributed
from minidiff.training.config import TrainConfig
from minidiff.training.loop import train
from minidiff.training.presets import PRESETS
from minidiff.training.run import Run, saved_training_state


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this invocation, with every setting spelled out."""
    words = [*launcher_words(), "-m", "minidiff", "train", "--out", args.out]
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
    return shlex.join(words + execution_words(args))



def train_from_arguments(args: argparse.Namespace) -> Run:
    """The train command: a new run from a preset, or --resume with the run's own saved config. A user's mistake
    is an exception that `python -m minidiff` shows as one line."""
    check_budget(args.steps, args.minutes)
    check_seed(args.seed)
    use_threads(args.threads)
    if args.resume:
        config = TrainConfig.from_dict(saved_training_state(Path(args.out)).config)
    else:
        config = dataclasses.replace(PRESETS[args.config](), seed=args.seed)
    if args.steps is not None or args.minutes is not None:
        config = dataclasses.replace(config, steps=args.steps, minutes=args.minutes)  # checked again, as a whole
    apply_execution_arguments(config, args)
    try:
        return train(config, args.out, resume=args.resume, device=args.device, command=command_line(args),
                     progress=not args.quiet)
    finally:
        distributed.finish()  # leave torchrun's process group, if the run joined one


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the train command's options on its sub-command parser."""
    parser.add_argument("--config", choices=sorted(PRESETS), default="mnist",
                        help="preset for a new run (default: mnist)")
    add_run_arguments(parser, "runs/mnist")
    add_execution_arguments(parser)
    parser.set_defaults(run=train_from_arguments)
