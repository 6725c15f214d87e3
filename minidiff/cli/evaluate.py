"""`python -m minidiff evaluate`: how good is a class-conditional digit model, measured.

Two numbers, both from the shipped digit classifier (`minidiff.measure.metrics`), which never saw a generated digit:
- class accuracy: the share of samples asked for digit k that the classifier reads as k;
- Fréchet distance between the classifier's features of the samples and of real digits, printed beside
  the real-vs-real baseline at the same n (two disjoint sets of real digits): a reference for the distance's
  small-sample bias at that n, not a floor (a good sampler can score a little below it).

The sampling and the scoring are `minidiff.measure.digits`, which the sampler race and the chapters use too; this
command prints the figures with their cost (NFE, seconds) and, with --record, writes them into the checkpoint's JSON.

    python -m minidiff evaluate --model mnist --n 1000 --sampler dpm++ --steps 20
    python -m minidiff evaluate --model runs/mnist_flow --n 1000 --sampler flow_heun --steps 10   # rectified flow
"""

import argparse
import json
import shlex

from minidiff.cli.options import check_counts, check_guidance_option, check_seed, use_threads
from minidiff.diffusion.flow import FLOW
from minidiff.diffusion.samplers import FLOW_SAMPLERS, SAMPLERS
from minidiff.files.device import resolve_device
from minidiff.measure.digits import balanced_labels, digit_quality, generate_digits
from minidiff.measure.metrics import real_vs_real_baseline
from minidiff.models import load_model, record_metrics


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this measurement, every setting spelled out."""
    words = ["python", "-m", "minidiff", "evaluate", "--model", str(args.model), "--n", str(args.n),
             "--sampler", args.sampler, "--seed", str(args.seed), "--device", args.device]
    for option in ("steps", "guidance", "threads"):
        if getattr(args, option) is not None:
            words += [f"--{option}", str(getattr(args, option))]
    return shlex.join(words)



def evaluate_from_arguments(args: argparse.Namespace) -> dict:
    """Sample args.n digits, measure them, print the figures, and record them in the checkpoint's JSON."""
    check_counts(args, "n", "steps")
    check_seed(args.seed)
    check_guidance_option(args.guidance)
    use_threads(args.threads)
    device = resolve_device(args.device)
    model, info = load_model(args.model, device)
    flow = info.diffusion["prediction"] == FLOW
    args.sampler = args.sampler or ("flow_euler" if flow else "ddpm")
    if flow != (args.sampler in FLOW_SAMPLERS):
        raise ValueError(f"--sampler {args.sampler} does not fit this model (prediction "
                         f"{info.diffusion['prediction']!r}): choose one of "
                         f"{sorted(FLOW_SAMPLERS) if flow else sorted(SAMPLERS)}")
    if info.network_config().num_classes is None:
        raise ValueError(f"{args.model} is not a class-conditional digit model: evaluate measures digits drawn by "
                         "class (e.g. mnist); measure a text or attribute model with evaluate-text")
    labels = balanced_labels(args.n)
    images, cost = generate_digits(model, info, labels, args.sampler, args.steps, args.guidance, args.seed,
                                   device=device)
    result = {**digit_quality(images, labels, args.seed), **cost,
              "real_vs_real_frechet_distance": real_vs_real_baseline(args.n, seed=args.seed)}
    settings = {"n": args.n, "sampler": args.sampler, "steps": args.steps, "guidance": args.guidance,
                "seed": args.seed, "device": str(device)}
    steps = args.steps or ("default" if flow else "all")  # a flow sampler's own default, or all T steps
    name = f"{args.sampler}_{steps}_steps" + (f"_guidance_{args.guidance}" if args.guidance else "")
    report = {**settings, **result, "command": command_line(args)}
    print(json.dumps(report, indent=1))
    if args.record:
        record_metrics(args.model, {name: report})
        print(f"recorded under metrics[{name!r}] in {args.model}'s JSON")
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the evaluate command's options."""
    parser.add_argument("--model", default="mnist", help="shipped checkpoint name or path (default: mnist)")
    parser.add_argument("--n", type=int, default=1000, help="digits to sample, labels cycling 0..9 (default: 1000)")
    parser.add_argument("--sampler", default=None, choices=sorted(SAMPLERS) + sorted(FLOW_SAMPLERS),
                        help="default: ddpm, or flow_euler for a rectified-flow model")
    parser.add_argument("--steps", type=int, default=None,
                        help="sampling steps (default: all T; the flow sampler's own for a rectified-flow model)")
    parser.add_argument("--guidance", type=float, default=None, help="classifier-free guidance w (default: off)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--record", action="store_true", help="write the figures into the checkpoint's metrics")
    parser.set_defaults(run=evaluate_from_arguments)
