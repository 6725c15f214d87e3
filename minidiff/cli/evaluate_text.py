"""`python -m minidiff evaluate-text`: does the text-to-image model draw what the prompt says? Measured.

(Also for chapter 09's model conditioned on attributes instead of text: the same prompts, as attribute tokens.)

The rule-based attribute checker (`minidiff.measure.shape_checker`, which never saw a generated image) reads colour,
shape, size and position off every sample, and `minidiff.measure.adherence` counts how often each matches the
prompt. Two sets of prompts, one for each thing a text model must do:
- read the words it was trained on: full captions with attributes drawn like the training data's (the train split's
  distribution, but not its images: another seed), 600 by default; a model that follows its prompts reaches
  colour >= 95%, shape, size and position >= 90% each;
- combine them: the held-out colour/shape pairs (purple triangle, yellow square, cyan circle), which never appeared
  in training: is the pair drawn right (colour and shape both)? >= 70%.

The command prints the figures and which of those bars (`minidiff.measure.adherence.BARS`) they reach; with
--record it writes them into the model's JSON.

    python -m minidiff evaluate-text --model shapes_text --n 600 --heldout-n 300 --record
"""

import argparse
import json
import shlex

from minidiff.cli.options import check_counts, check_guidance_option, check_seed, use_threads
from minidiff.diffusion.samplers import SAMPLERS
from minidiff.measure.adherence import adherence_report, prompt_adherence
from minidiff.models import record_metrics
from minidiff.pipeline import DEFAULT_MODEL, TextToImage


def evaluate_from_arguments(args: argparse.Namespace) -> dict:
    """Measure both prompt sets, print the figures and the bars they reach, and record them in the model's JSON."""
    check_counts(args, "n", "heldout_n", "steps")
    check_seed(args.seed)
    check_guidance_option(args.guidance)
    use_threads(args.threads)
    pipe = TextToImage.load(args.model, args.device)
    settings = {"sampler": args.sampler, "steps": args.steps, "guidance": args.guidance, "seed": args.seed}
    result = {**settings,
              "train_captions": prompt_adherence(pipe, args.n, "train", args.sampler, args.steps, args.guidance,
                                                 args.seed),
              "heldout_pairs": prompt_adherence(pipe, args.heldout_n, "heldout", args.sampler, args.steps,
                                                args.guidance, args.seed),
              "command": shlex.join(["python", "-m", "minidiff", "evaluate-text", "--model", str(args.model),
                                     "--n", str(args.n), "--heldout-n", str(args.heldout_n), "--sampler",
                                     args.sampler, "--steps", str(args.steps), "--guidance", str(args.guidance),
                                     "--seed", str(args.seed)])}
    print(json.dumps(result, indent=1))
    print("\n".join(adherence_report(result)))
    if args.record:
        record_metrics(args.model, {f"adherence_{args.sampler}_{args.steps}_steps_guidance_{args.guidance}": result})
        print(f"recorded in {args.model}'s JSON")
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the evaluate-text command's options."""
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"text-to-image model (default: {DEFAULT_MODEL})")
    parser.add_argument("--n", type=int, default=600, help="prompts from the training distribution (default: 600)")
    parser.add_argument("--heldout-n", type=int, default=300, help="prompts with held-out pairs (default: 300)")
    parser.add_argument("--sampler", default="dpm++", choices=sorted(SAMPLERS))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--record", action="store_true", help="write the figures into the model's JSON")
    parser.set_defaults(run=evaluate_from_arguments)
