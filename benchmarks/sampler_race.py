"""The sampler race: DDPM, DDIM, DPM-Solver++ (ODE and SDE), Euler and Heun on the shipped MNIST model.

For every (sampler, steps) cell: sample --n digits (labels cycling 0 ... 9, the same seeds and so the same starting
noise for every sampler), then measure class accuracy and the Fréchet distance with the digit classifier, and the
cost: NFE, wall-clock seconds, seconds per image and CPU seconds. Writes --out (JSON, every cell) and the PNG beside
it (quality against NFE and against seconds), both atomically after each cell, and prints a Markdown table with the
real-vs-real baseline at that n. The full race takes hours on a CPU: it is resumable, and cells already in --out
are skipped, so run it again after an interruption (or with more --steps) and it carries on.

    .venv/bin/python benchmarks/sampler_race.py                       # the full race, n = 1000 (hours)
    .venv/bin/python benchmarks/sampler_race.py --n 40 --steps 5 10 --samplers ddim dpm++ --out /tmp/race.json

Two cores can run two races at once, each with its own --out and one thread; --merge then adds the cells of the
others to --out (they must share its settings) and samples nothing:

    .venv/bin/python benchmarks/sampler_race.py --merge /tmp/other_race.json

A rectified-flow model (prediction "flow") races with its own samplers, flow_euler, flow_midpoint and flow_heun, into
benchmarks/results/sampler_race_flow.json by default; --nfe races budgets of network evaluations instead of step
counts, each sampler taking as many steps as fit (Heun and the midpoint method spend two per step):

    .venv/bin/python benchmarks/sampler_race.py --model mnist_flow --nfe 5 10 20 50   # the shipped one, or a run folder

Wall-clock times depend on what else the machine runs; --threads 1 (the default) keeps them comparable between
cells, and the CPU seconds column counts only this process's work.
"""

import argparse
import io
from pathlib import Path

import torch

from minidiff.diffusion.flow import FLOW
from minidiff.files.atomic import atomic_write_bytes
from minidiff.files.device import device_description, resolve_device
from minidiff.measure import race
from minidiff.models import load_model
from minidiff.views import race_figures

SHIPPED_RESULTS = Path(__file__).resolve().parent / "results" / "sampler_race.json"
FLOW_RESULTS = SHIPPED_RESULTS.with_name("sampler_race_flow.json")  # a rectified-flow model's race, by default


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mnist", help="shipped checkpoint name or path (default: mnist)")
    parser.add_argument("--n", type=int, default=1000, help="digits per cell, labels cycling 0..9 (default: 1000)")
    parser.add_argument("--samplers", nargs="+", default=None, choices=race.RACE_SAMPLERS + race.FLOW_RACE_SAMPLERS,
                        help="default: the six VP samplers, or the three flow samplers for a rectified-flow model")
    counts = parser.add_mutually_exclusive_group()
    counts.add_argument("--steps", nargs="+", type=int, default=None, dest="step_counts",
                        help=f"step counts to race (default: {' '.join(map(str, race.RACE_STEPS))})")
    counts.add_argument("--nfe", nargs="+", type=int, default=None,
                        help="budgets of network evaluations per image to race instead: each sampler takes as many "
                             "steps as fit (race.steps_for_nfe)")
    parser.add_argument("--guidance", type=float, default=None, help="classifier-free guidance w (default: off)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=250, help="digits sampled at once (default: 250)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default: 1)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None,
                        help="results JSON; the PNG is written beside it (default: benchmarks/results/"
                             "sampler_race.json, or sampler_race_flow.json for a rectified-flow model)")
    parser.add_argument("--merge", nargs="+", type=Path, default=[], metavar="FILE",
                        help="add the cells of these race files (same settings) to --out, and sample nothing")
    return parser.parse_args()


def save(results: dict, out: Path) -> None:
    """The JSON and its figure, each written atomically."""
    race.save_results(out, results)
    buffer = io.BytesIO()
    # on a CPU, the race's own CPU time: wall time there also counts whatever else the machine was running
    seconds = "cpu_seconds" if results["settings"].get("device", "cpu") == "cpu" else "seconds"
    race_figures.race_figure(results, seconds=seconds).savefig(buffer, format="png", dpi=120)
    atomic_write_bytes(out.with_suffix(".png"), buffer.getvalue())


def print_cell(cell: dict) -> None:
    print(f"{cell['sampler']:>8} {cell['steps']:>5} steps: NFE {cell['nfe']:>5}, {cell['seconds']:8.1f} s, "
          f"accuracy {cell['class_accuracy']:.3f}, Fréchet {cell['frechet_distance']:.2f}", flush=True)


def merge(results: dict, paths: list[Path]) -> None:
    """Add every cell of the race files at `paths` that `results` lacks; exits with a message on a mismatch."""
    for path in paths:
        other = race.load_results(path)
        if other is None:
            raise SystemExit(f"cannot merge {path}: no such file")
        try:
            added = race.merge_results(results, other)
        except ValueError as error:
            raise SystemExit(f"cannot merge {path}: {error}") from None
        print(f"merged {path}: {added} new cells, {len(other['cells']) - added} already in the results")


def main() -> None:
    args = parse_arguments()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if device.type == "cuda":
        # float32 arithmetic as on the CPU: PyTorch lets cuDNN's convolutions round through TF32 by default
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    model, info = load_model(args.model, device)
    flow = info.diffusion["prediction"] == FLOW
    args.samplers = args.samplers or list(race.FLOW_RACE_SAMPLERS if flow else race.RACE_SAMPLERS)
    misfits = [name for name in args.samplers if (name in race.FLOW_RACE_SAMPLERS) != flow]
    if misfits:
        raise SystemExit(f"--samplers {' '.join(misfits)} do not fit {args.model} (prediction "
                         f"{info.diffusion['prediction']!r}); leave --samplers out to race the ones that do")
    args.out = args.out or (FLOW_RESULTS if flow else SHIPPED_RESULTS)
    counts = args.nfe or args.step_counts or list(race.RACE_STEPS)
    T = info.diffusion["T"]
    too_many = [count for count in counts if not 1 <= count <= T]
    if too_many:
        raise SystemExit(f"--steps and --nfe must lie in 1 ... T = {T}; got {too_many}")
    settings = {"model": str(args.model), "model_sha256": race.model_sha256(args.model), "model_step": info.step,
                "n": args.n, "seed": args.seed, "guidance": args.guidance, "batch_size": args.batch_size,
                "threads": args.threads, "device": str(device), "torch": torch.__version__}
    if device.type == "cuda":
        settings["device_name"] = device_description(device)  # the GPU's name
    results = race.load_results(args.out)
    if results is None:
        results = race.new_results(settings)
    else:
        try:
            race.check_resumable(results, settings)
        except ValueError as error:
            raise SystemExit(f"cannot resume {args.out}: {error}") from None
        print(f"resuming {args.out}: {len(results['cells'])} cells already measured, skipped")

    def on_cell(results: dict, cell: dict) -> None:
        print_cell(cell)
        save(results, args.out)

    if args.merge:
        merge(results, args.merge)
    else:
        race.run_race(model, info, results, args.samplers, counts, device, on_cell=on_cell, by_nfe=bool(args.nfe))
    save(results, args.out)
    print()
    print(race.results_table(results))
    print(f"\nreal-vs-real Fréchet distance at n = {args.n}: {results['real_vs_real_frechet_distance']:.2f}")
    for fast in race.FAST_CELLS:
        check = race.fast_against_slow(results, fast=fast)
        if check is not None:
            verdict = "as good, and cheaper" if check["as_good_and_cheaper"] else "not as good, or not 40x cheaper"
            print(f"{fast[0]} {fast[1]} steps vs DDPM 1000 steps: Fréchet ratio {check['frechet_ratio']:.3f} "
                  f"(within 10%: <= 1.1), CPU-time speed-up {check['cpu_speedup']:.1f}x (>= 40; wall time "
                  f"{check['speedup']:.1f}x): {verdict}")
    print(f"\nwrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
