"""The options every training command shares for how a step is computed, not what: gradient accumulation, precision,
channels-last memory, torch.compile (`minidiff.training.config.EXECUTION_FIELDS`), and how a command started by
torchrun is recorded.

A new run takes them from its preset unless given; a resumed run keeps its own unless given, so that
`--resume --precision bf16` moves a run to bfloat16 (from then on: a resume is exact only in the same precision).
"""

import argparse

from minidiff.training.config import PRECISIONS, LoopConfig
from minidiff.training.distributed import environment_rank


def add_execution_arguments(parser: argparse.ArgumentParser) -> None:
    """Register --accumulate, --precision, --channels-last and --compile on a training command's parser."""
    parser.add_argument("--accumulate", type=int, default=None,
                        help="micro-batches per process and step (gradient accumulation): the same batch in less "
                             "memory (default: the preset's, 1)")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="fp32 (default), bf16 (autocast; CUDA GPUs since Ampere, recent CPUs) or fp16 (autocast "
                             "with a gradient scaler)")
    parser.add_argument("--channels-last", action="store_true", default=None,
                        help="weights in NHWC memory order: faster convolutions on GPUs")
    parser.add_argument("--compile", action="store_true", default=None,
                        help="torch.compile the network: a slow first step, faster ones after")


def apply_execution_arguments(config: LoopConfig, args: argparse.Namespace) -> None:
    """Set the config's execution fields that the command line gives (and check them, as a new config would)."""
    for name in ("accumulate", "precision", "channels_last", "compile"):
        if getattr(args, name) is not None:
            setattr(config, name, getattr(args, name))
    type(config).from_dict(config.to_dict())  # raises ValueError for an accumulate that does not divide the batch


def execution_words(args: argparse.Namespace) -> list[str]:
    """The execution options as given, spelled out for the run's recorded command."""
    words = []
    if args.accumulate is not None:
        words += ["--accumulate", str(args.accumulate)]
    if args.precision is not None:
        words += ["--precision", args.precision]
    words += ["--channels-last"] * bool(args.channels_last) + ["--compile"] * bool(args.compile)
    return words


def launcher_words() -> list[str]:
    """How the command was started: `python` alone, or torchrun with its number of processes."""
    _, world_size, _ = environment_rank()
    return ["python"] if world_size == 1 else ["torchrun", "--nproc_per_node", str(world_size)]
