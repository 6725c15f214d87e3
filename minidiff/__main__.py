"""Command line: `python -m minidiff <command>`. Each command lives in its own module of minidiff.cli; this file only
dispatches."""

import argparse
import warnings

from minidiff.cli import demo, evaluate, evaluate_emoji, evaluate_text, sample, train, train_clip, train_vae
from minidiff.files.checkpoint import CheckpointError

# what a command raises for a user's mistake (a wrong path, model, setting or device, a run that diverged): shown
# as one line, "minidiff COMMAND: what is wrong and what to do", instead of a traceback
USER_ERRORS = (FileNotFoundError, FileExistsError, CheckpointError, FloatingPointError, ValueError)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m minidiff", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo.add_arguments(commands.add_parser("demo", help="run the main demo on the shipped data and checkpoints"))
    train.add_arguments(commands.add_parser("train", help="train a diffusion model (a preset) into a run folder"))
    train_vae.add_arguments(commands.add_parser("train-vae", help="train the autoencoder for latent diffusion"))
    train_clip.add_arguments(commands.add_parser("train-clip", help="train the tiny CLIP on emoji and their captions"))
    sample.add_arguments(commands.add_parser("sample", help="draw images from a trained model into a folder"))
    evaluate.add_arguments(commands.add_parser("evaluate",
                                               help="measure a digit model: class accuracy, Fréchet distance"))
    evaluate_text.add_arguments(commands.add_parser("evaluate-text", help="measure a text-to-image model's prompt "
                                                                          "adherence with the attribute checker"))
    evaluate_emoji.add_arguments(commands.add_parser("evaluate-emoji", help="measure a text-to-emoji model with the "
                                                                            "evaluator CLIP"))
    args = parser.parse_args(argv)
    library_format = warnings.formatwarning
    # a warning reads as one line like an error, "minidiff COMMAND: warning: ...", not as a file path and source line
    warnings.formatwarning = lambda message, *rest, **options: f"minidiff {args.command}: warning: {message}\n"
    try:
        args.run(args)
    except USER_ERRORS as error:
        raise SystemExit(f"minidiff {args.command}: {error}") from None
    finally:
        warnings.formatwarning = library_format


if __name__ == "__main__":
    main()
