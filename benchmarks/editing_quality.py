"""Does img2img recolour a shape as asked, and keep everything else? Measured with the attribute checker.

For --n Shapes images (train-split attributes, a seed training never used), ask for the same caption with another
colour ("a small red circle in the top left" -> "a small blue circle in the top left"; the new colour drawn at
random among the other five), run img2img (SDEdit) at each --strength with the shipped text model, DPM-Solver++ 20
steps, guidance 3, and read the result: the share whose colour is the new one, and the share that keeps the input's
shape and position (and size). Prints a Markdown table and writes --out (JSON).

    .venv/bin/python benchmarks/editing_quality.py                    # n = 200, strengths 0.4 ... 0.8, ~3 minutes
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from minidiff.data.shapes import COLOURS, full_caption, shapes
from minidiff.files.atomic import atomic_write_bytes
from minidiff.measure.shape_checker import read_attributes
from minidiff.pipeline import DEFAULT_MODEL, TextToImage


def recolour_tasks(n: int, seed: int) -> tuple[np.ndarray, list[dict], list[dict]]:
    """n input images, their attributes, and the wanted attributes (the same but for another colour)."""
    images, _, attributes = shapes(n, "train", seed)
    rng = np.random.default_rng(seed)
    wanted = []
    for a in attributes:
        others = [c for c in COLOURS if c != a["colour"]]
        wanted.append({**a, "colour": str(rng.choice(others))})
    return images, attributes, wanted


@torch.inference_mode()
def recolour(pipe: TextToImage, images: np.ndarray, wanted: list[dict], strength: float, seed: int = 0) -> list[dict]:
    """img2img each image towards its wanted caption; the checker's reading of every result."""
    readings = []
    for index, (image, target) in enumerate(zip(images, wanted)):
        result = pipe(full_caption(target), init_image=image, strength=strength, seed=seed + index)
        readings.append(read_attributes(result.images)[0])
    return readings


def scores(readings: list[dict], inputs: list[dict], wanted: list[dict]) -> dict:
    """Shares: recoloured as asked; shape and position kept; size kept too."""
    def share(test) -> float:
        return float(np.mean([test(r, a, w) for r, a, w in zip(readings, inputs, wanted)]))
    return {"recoloured": share(lambda r, a, w: r["colour"] == w["colour"]),
            "shape_and_position_kept": share(lambda r, a, w: (r["shape"], r["position"]) == (a["shape"], a["position"])),
            "size_kept": share(lambda r, a, w: r["size"] == a["size"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--strength", type=float, nargs="+", default=[0.4, 0.5, 0.6, 0.7, 0.8])
    parser.add_argument("--seed", type=int, default=2000, help="seed of the inputs (training used 0)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/editing_quality.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = TextToImage.load(args.model)
    images, inputs, wanted = recolour_tasks(args.n, args.seed)
    results = {strength: scores(recolour(pipe, images, wanted, strength), inputs, wanted) for strength in args.strength}
    print("| strength | recoloured as asked | shape and position kept | size kept |")
    print("|---:|---:|---:|---:|")
    for strength, r in results.items():
        print(f"| {strength:g} | {r['recoloured']:.0%} | {r['shape_and_position_kept']:.0%} | {r['size_kept']:.0%} |")
    report = {"model": str(args.model), "n": args.n, "seed": args.seed, "sampler": "dpm++", "steps": 20,
              "guidance": 3.0, "results": results}
    atomic_write_bytes(args.out, (json.dumps(report, indent=1) + "\n").encode())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
