"""Time to draw for one prompt with the shipped text model: 4 images, DPM-Solver++ 20 steps, guidance 3, one thread.

The whole pipeline call is timed: prompt -> tokens -> 20 guided U-Net evaluations of a batch of 8 (4 conditional,
4 unconditional) -> the autoencoder's decoder -> images. Median over repeats, after one warm-up call; the CPU clock
(`--clock cpu`, the default) counts only this process's time, so other work on the machine barely moves it.
Run:  .venv/bin/python benchmarks/bench_sampling.py   (`--out FILE.json` also stores each call's time and the command)
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from minidiff.files.atomic import atomic_write_bytes
from minidiff.files.device import device_description
from minidiff.pipeline import TextToImage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompt", default="a large red circle in the top left")
    parser.add_argument("--n", type=int, default=4, help="images for the prompt")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=["wall", "cpu"], default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="also write the timings as JSON here")
    args = parser.parse_args()
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    torch.set_num_threads(args.threads)
    pipe = TextToImage.load("shapes_text")
    pipe(args.prompt, n=args.n, sampler="dpm++", steps=args.steps, seed=0)  # warm-up
    seconds = []
    for _ in range(args.repeats):
        start = clock()
        pipe(args.prompt, n=args.n, sampler="dpm++", steps=args.steps, seed=0)
        seconds.append(clock() - start)
    print(f"shapes_text, {args.n} images of {args.prompt!r}, DPM-Solver++ {args.steps} steps, guidance 3, "
          f"{torch.get_num_threads()} thread(s), {args.clock} clock")
    print(f"median {1000 * statistics.median(seconds):.0f} ms per call (min {1000 * min(seconds):.0f}, "
          f"max {1000 * max(seconds):.0f}, {args.repeats} repeats)")
    if args.out is not None:
        result = {"command": " ".join(["benchmarks/bench_sampling.py", *sys.argv[1:]]), "torch": torch.__version__,
                  "cpu": device_description("cpu"), "threads": torch.get_num_threads(),
                  "clock": args.clock, "prompt": args.prompt, "n": args.n, "steps": args.steps,
                  "median_ms": 1000 * statistics.median(seconds), "call_ms": [1000 * s for s in seconds]}
        atomic_write_bytes(args.out, (json.dumps(result, indent=1) + "\n").encode())
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
