"""What more training buys the text-to-emoji model: R-precision and Fréchet distance against the images it had seen.

Measures every model a run kept on the way (`keep_models_at_steps`; the emoji_text preset keeps steps 250, 750,
2,000 and 5,000 of its 8,000 in RUN/models/) and its final one with `minidiff.measure.emoji_curve.learning_curve`:
the evaluator CLIP (never the generator's), --n training captions for R-precision (generated beside real), --limit
test images for the Fréchet distance, the same captions and noise at every point. Writes --out (JSON) and the PNG
beside it; --record NAME also writes the points into that model checkpoint's JSON (the shipped model's, e.g. emoji).

    .venv/bin/python benchmarks/emoji_learning_curve.py --run runs/emoji --record emoji
"""

import argparse
import io
import json
import shlex
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from minidiff.files.atomic import atomic_write_bytes  # noqa: E402
from minidiff.measure.emoji import Evaluator  # noqa: E402
from minidiff.measure.emoji_curve import learning_curve  # noqa: E402
from minidiff.models import record_metrics  # noqa: E402


def count_label(count: int) -> str:
    """A short tick label for a count of images: 950, 32k, 1.0M (short enough for neighbouring ticks on a log axis)."""
    if count >= 1_000_000:
        return f"{count / 1e6:.1f}M"
    return f"{count / 1000:.0f}k" if count >= 1000 else str(count)


def figure(points: list[dict]) -> bytes:
    """Two panels against images seen: R-precision (generated, and real as a line) and the Fréchet distance (PNG)."""
    seen = [point["images_seen"] for point in points]
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3), dpi=100)
    left.plot(seen, [point["r_precision"] for point in points], "o-", label="generated")
    left.axhline(points[-1]["r_precision_real"], color="grey", linestyle="--", label="real images")
    left.set(xlabel="training images seen", ylabel="R-precision (top-1 of 100)", ylim=(0, 1))
    left.legend()
    right.plot(seen, [point["frechet"] for point in points], "o-")
    right.set(xlabel="training images seen", ylabel="Fréchet distance to test images")
    for ax in (left, right):  # a log axis, ticked at the points themselves: 32k, 96k, ..., 1.0M
        ax.set_xscale("log")
        ax.set_xticks(seen, [count_label(count) for count in seen])
        ax.minorticks_off()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="the training run's folder (--out of train)")
    parser.add_argument("--evaluator", default="emoji_evaluator", help="the evaluator CLIP (not the generator's)")
    parser.add_argument("--n", type=int, default=500, help="training captions for R-precision")
    parser.add_argument("--limit", type=int, default=500, help="test images for the Fréchet distance")
    parser.add_argument("--sampler", default="dpm++")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/emoji_learning_curve.json"))
    parser.add_argument("--record", default=None, help="also write the points into this model checkpoint's JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = dict(n=args.n, limit=args.limit, sampler=args.sampler, steps=args.steps, guidance=args.guidance,
                    seed=args.seed)
    points = learning_curve(args.run, Evaluator.load(args.evaluator), **settings)
    print("| images seen | step | R-precision generated | real | Fréchet distance |")
    print("|---:|---:|---:|---:|---:|")
    for p in points:
        print(f"| {p['images_seen']:,} | {p['step']} | {p['r_precision']:.1%} | {p['r_precision_real']:.1%} | "
              f"{p['frechet']:.2f} |")
    command = shlex.join(["python", *sys.argv])
    report = {"run": str(args.run), "evaluator": str(args.evaluator), **settings, "command": command,
              "points": points}
    atomic_write_bytes(args.out, (json.dumps(report, indent=1) + "\n").encode())
    atomic_write_bytes(args.out.with_suffix(".png"), figure(points))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    if args.record:
        record_metrics(args.record, {"learning_curve": report})
        print(f"recorded in {args.record}'s JSON")


if __name__ == "__main__":
    main()
