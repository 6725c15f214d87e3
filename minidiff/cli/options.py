"""The checks the commands share on their options, run before a command loads, trains or writes anything.

A refused option is a ValueError or TypeError that names it (e.g. "--n must be a whole number >= 1, got 0"), which
`python -m minidiff` shows as one line; the kinds of value are checked by `minidiff.diffusion.arguments`, the same
functions the library's own entry points use.
"""

import argparse

import torch

from minidiff.diffusion.arguments import real_number, whole_number


def use_threads(threads: int | None) -> None:
    """--threads: how many CPU threads torch may use (None: torch's choice)."""
    if threads is not None:
        torch.set_num_threads(whole_number("--threads", threads, 1, what="CPU threads for torch"))


def check_counts(args: argparse.Namespace, *names: str) -> None:
    """Each of these options, when given, is a whole number >= 1 (--n, --steps, --heldout-n ...)."""
    for name in names:
        if getattr(args, name) is not None:
            whole_number(f"--{name.replace('_', '-')}", getattr(args, name), 1)


def check_seed(seed: int) -> None:
    """--seed: a whole number >= 0, what torch.Generator().manual_seed takes."""
    whole_number("--seed", seed, 0)


def check_budget(steps: int | None, minutes: float | None) -> None:
    """--steps and --minutes of a training run: steps a whole number >= 1, minutes a number > 0."""
    if steps is not None:
        whole_number("--steps", steps, 1, what="training steps in all")
    if minutes is not None:
        real_number("--minutes", minutes, 0.0, low_open=True, what="minutes of training in all")


def check_guidance_option(guidance: float | None) -> None:
    """--guidance: a finite number when given (its sign is warned about where it is used)."""
    if guidance is not None:
        real_number("--guidance", guidance, what="the classifier-free guidance scale w")


def add_run_arguments(parser: argparse.ArgumentParser, example_out: str) -> None:
    """The options every training command shares: where the run lives, its budget, resuming, seed, device,
    threads and the progress bar (the preset option and how a step is computed are each command's own)."""
    parser.add_argument("--out", required=True, help=f"run folder, e.g. {example_out}")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, help="train until this many steps in all (default: the preset's)")
    budget.add_argument("--minutes", type=float, help="train until this many minutes in all, earlier sessions included")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--seed", type=int, default=0, help="seed of a new run (default: 0)")
    parser.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda or mps")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's choice; 1 is often faster on a busy 2-core CPU)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
