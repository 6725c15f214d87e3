"""`python -m minidiff train-vae`: train the autoencoder (`minidiff.training.vae`) from a preset, or resume a run.

    python -m minidiff train-vae --preset shapes --out runs/vae --minutes 25 --threads 1
    python -m minidiff train-vae --out runs/vae --minutes 40 --resume       # carry on to 40 minutes in all
    python -m minidiff train-vae --preset emoji_decoder --out runs/emoji_decoder   # a new decoder for emoji_vae
    torchrun --standalone --nproc_per_node 2 -m minidiff train-vae --preset shapes --out runs/vae --minutes 25

What the run folder holds, and how a run resumes exactly, is `minidiff.training.run`; the options shared with
`train` for how each step is computed (torchrun, --accumulate, --precision, ...), `minidiff.cli.execution`.
"""

import argparse
import dataclasses
import shlex
from pathlib import Path

from minidiff.cli.execution import add_execution_arguments, apply_execution_arguments, execution_words, launcher_words
from minidiff.cli.options import add_run_arguments, check_budget, check_seed, use_threads
from minidiff.models import AutoencoderInfo
from minidiff.training import distributed
from minidiff.training.config import VAETrainConfig
from minidiff.training.presets import AUTOENCODER_PRESETS
from minidiff.training.run import saved_training_state
from minidiff.training.vae import train_vae


def train_from_arguments(args: argparse.Namespace) -> AutoencoderInfo | None:
    """The train-vae command: a new run from a preset, or --resume with the run's own saved config. A user's
    mistake is an exception that `python -m minidiff` shows as one line."""
    check_budget(args.steps, args.minutes)
    check_seed(args.seed)
    use_threads(args.threads)
    if args.resume and args.decoder_from is not None:
        raise ValueError("--decoder-from starts a new run; a resumed run keeps the one it was started with (drop "
                         "--decoder-from)")
    if args.resume:
        config = VAETrainConfig.from_dict(saved_training_state(Path(args.out)).config)
    else:
        config = dataclasses.replace(AUTOENCODER_PRESETS[args.preset](), seed=args.seed)
        if args.decoder_from is not None:
            config = dataclasses.replace(config, decoder_from=args.decoder_from)
    if args.steps is not None or args.minutes is not None:
        config = dataclasses.replace(config, steps=args.steps, minutes=args.minutes)  # checked again, as a whole
    apply_execution_arguments(config, args)
    words = [*launcher_words(), "-m", "minidiff", "train-vae", "--out", str(args.out)]
    words += ["--resume"] if args.resume else ["--preset", args.preset, "--seed", str(args.seed)]
    if args.decoder_from is not None:
        words += ["--decoder-from", args.decoder_from]
    for option in ("steps", "minutes", "threads"):
        if getattr(args, option) is not None:
            words += [f"--{option}", str(getattr(args, option))]
    try:
        info = train_vae(config, args.out, args.resume, args.device, shlex.join(words + execution_words(args)),
                         progress=not args.quiet)
    finally:
        distributed.finish()  # leave torchrun's process group, if the run joined one
    if info is not None:  # the main process (the others of a torchrun run return None)
        print(f"wrote {Path(args.out) / 'autoencoder'}.json: scale factor {info.scale_factor:.4f}, {info.metrics}")
    return info


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the train-vae command's options."""
    parser.add_argument("--preset", choices=sorted(AUTOENCODER_PRESETS), default="shapes")
    parser.add_argument("--decoder-from", default=None, metavar="AUTOENCODER",
                        help="train only the decoder, behind this autoencoder's frozen encoder (a shipped name or a "
                             "path): its latent space, and every model trained in it, stays valid")
    add_run_arguments(parser, "runs/vae")
    add_execution_arguments(parser)
    parser.set_defaults(run=train_from_arguments)
