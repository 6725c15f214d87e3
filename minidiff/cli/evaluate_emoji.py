"""`python -m minidiff evaluate-emoji`: how well does the text-to-emoji model draw? Measured by a second CLIP.

The evaluator is a CLIP trained like the generator's but with another seed, and never used by the generator (the
command refuses the generator's own). What is measured, and the papers, is `minidiff.measure.emoji_report`:
R-precision on training captions (generated beside real), the Fréchet distance to the test images (beside
real-vs-real), the held-out compositions (skin tone, person, style; each reader checked on real images), and
memorisation (near-copies of training images). With several --seeds each figure is their mean (and each bar line
shows their range); with --record the figures go into the model's JSON.

    python -m minidiff evaluate-emoji --model emoji --evaluator emoji_evaluator --n 500 --seeds 0 1 2 --record
"""

import argparse
import json
import shlex

import torch

from minidiff.diffusion.samplers import SAMPLERS
from minidiff.measure.emoji import Evaluator
from minidiff.measure.emoji_report import bar_report, evaluate_emoji, mean_over_seeds, summary
from minidiff.models import record_metrics
from minidiff.pipeline import TextToImage


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this measurement, every setting spelled out."""
    words = ["python", "-m", "minidiff", "evaluate-emoji", "--model", str(args.model), "--evaluator",
             str(args.evaluator), "--n", str(args.n), "--sampler", args.sampler, "--steps", str(args.steps),
             "--guidance", str(args.guidance), "--seeds", *map(str, args.seeds), "--style-steps",
             str(args.style_steps)]
    return shlex.join(words + ([] if args.limit is None else ["--limit", str(args.limit)]))


def evaluate_from_arguments(args: argparse.Namespace) -> dict:
    """Measure, print the figures and the bars the course sets, and (--record) write them into the model's JSON."""
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.n < 1 or (args.limit is not None and args.limit < 2):
        raise ValueError(f"--n must be at least 1 and --limit at least 2, got {args.n} and {args.limit}")
    if len(set(args.seeds)) != len(args.seeds):
        raise ValueError(f"--seeds must differ from each other (a repeated seed measures the same images), got "
                         f"{args.seeds}")
    pipe = TextToImage.load(args.model, args.device)
    evaluator = Evaluator.load(args.evaluator, args.device)
    results = [summary(evaluate_emoji(pipe, evaluator, args.n, args.limit, args.sampler, args.steps, args.guidance,
                                      seed, style_steps=args.style_steps)) for seed in args.seeds]
    result = {**(results[0] if len(results) == 1 else mean_over_seeds(results)), "command": command_line(args)}
    print(json.dumps(result, indent=1))
    print("\n".join(bar_report(result)))
    if args.record:
        record_metrics(args.model, {f"emoji_{args.sampler}_{args.steps}_steps_guidance_{args.guidance}": result})
        print(f"recorded in {args.model}'s JSON")
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the evaluate-emoji command's options."""
    parser.add_argument("--model", default="emoji", help="text-to-emoji model (default: emoji)")
    parser.add_argument("--evaluator", default="emoji_evaluator",
                        help="the evaluator CLIP, not the generator's (default: emoji_evaluator)")
    parser.add_argument("--n", type=int, default=500, help="training captions for R-precision (default: 500)")
    parser.add_argument("--limit", type=int, default=None,
                        help="at most this many test and held-out images each (default: all)")
    parser.add_argument("--sampler", default="dpm++", choices=sorted(SAMPLERS))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="one measurement per seed, figures averaged (default: 0; the recorded figures: 0 1 2)")
    parser.add_argument("--style-steps", type=int, default=400, help="the style classifier's training steps")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--record", action="store_true", help="write the figures into the model's JSON")
    parser.set_defaults(run=evaluate_from_arguments)
