"""Prompt adherence of the text-to-image model as a function of the guidance scale w.

For each w: --n prompts from the training distribution and --heldout-n with the held-out colour/shape pairs, the
same prompts and noise for every w (DPM-Solver++, 20 steps); the attribute checker reads each image. Writes --out
(JSON) and the plot beside it (PNG), and prints a Markdown table.

    .venv/bin/python benchmarks/adherence_vs_guidance.py                  # ~5 minutes on one CPU thread
    .venv/bin/python benchmarks/adherence_vs_guidance.py --guidance 1 2 3 5 --n 100 --out /tmp/sweep.json
"""

import argparse
import io
import json
from pathlib import Path

import torch
from matplotlib.figure import Figure

from minidiff.files.atomic import atomic_write_bytes
from minidiff.measure.adherence import guidance_sweep
from minidiff.measure.shape_checker import ATTRIBUTES
from minidiff.pipeline import DEFAULT_MODEL, TextToImage


def sweep_figure(train: dict, heldout: dict) -> Figure:
    """Adherence per attribute against w (left), and the held-out pairs' colour+shape against w (right)."""
    fig = Figure(figsize=(9.0, 3.4), layout="constrained")
    left, right = fig.subplots(1, 2, sharey=True)
    ws = sorted(train)
    for name in (*ATTRIBUTES, "all"):
        left.plot(ws, [train[w][name] for w in ws], "o-", label=name, linewidth=2.5 if name == "all" else 1.2)
    right.plot(ws, [heldout[w]["colour+shape"] for w in ws], "o-", color="tab:purple", label="colour + shape")
    right.axhline(0.7, color="grey", linestyle="--", linewidth=1, label="target 70%")
    left.set_title("training-distribution captions", fontsize=9)
    right.set_title("held-out colour/shape pairs", fontsize=9)
    left.set_ylabel("share read as asked", fontsize=8)
    for ax in (left, right):
        ax.set_xlabel("guidance scale w", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_ylim(0, 1.02)
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--guidance", type=float, nargs="+", default=[0.0, 1.0, 2.0, 3.0, 5.0, 7.5])
    parser.add_argument("--n", type=int, default=200, help="training-distribution prompts per w (default: 200)")
    parser.add_argument("--heldout-n", type=int, default=150, help="held-out-pair prompts per w (default: 150)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/adherence_vs_guidance.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = TextToImage.load(args.model)
    train = guidance_sweep(pipe, args.guidance, args.n, "train")
    heldout = guidance_sweep(pipe, args.guidance, args.heldout_n, "heldout")
    print("| w | colour | shape | size | position | all four | held-out colour + shape |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for w in args.guidance:
        t = train[w]
        print(f"| {w:g} | {t['colour']:.0%} | {t['shape']:.0%} | {t['size']:.0%} | {t['position']:.0%} | "
              f"{t['all']:.0%} | {heldout[w]['colour+shape']:.0%} |")
    result = {"model": str(args.model), "sampler": "dpm++", "steps": 20, "train": train, "heldout": heldout}
    atomic_write_bytes(args.out, (json.dumps(result, indent=1) + "\n").encode())
    buffer = io.BytesIO()
    sweep_figure(train, heldout).savefig(buffer, format="png", dpi=120)
    atomic_write_bytes(args.out.with_suffix(".png"), buffer.getvalue())
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
