"""Where the time of a U-Net forward pass goes: minidiff's class U-Net against diffusers' UNet2DModel, as
benchmarks/bench_unet.py builds them (same configuration, 1x28x28, batch 64), under torch.profiler.

Each model runs `--passes` forward passes in eval mode after two untimed ones, the two models alternating pass by
pass. The profiler's self CPU time of every operation is summed into four kinds: the convolutions (oneDNN's kernels,
the same in both networks), the matrix products and attention, the normalisations (GroupNorm, LayerNorm) and
activations, and everything else (additions, copies, concatenations, the embedding); each kind, and the total, is
the median over the passes. The profiler slows every operation a little, so the totals run above bench_unet.py's
timings; the shares are what to read.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/profile_unet.py --out benchmarks/results/profile_unet.json
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_unet import call_diffusers, call_ours, diffusers_twin  # noqa: E402

from minidiff.files.atomic import atomic_write_bytes  # noqa: E402
from minidiff.files.device import device_description  # noqa: E402
from minidiff.nets.unet import UNet, UNetConfig  # noqa: E402

KINDS = {  # an operation's kind: the first whose words appear in its name
    "convolution": ("convolution",),
    "matrix products and attention": ("addmm", "aten::mm", "bmm", "linear", "attention", "softmax", "baddbmm"),
    "normalisation and activation": ("group_norm", "layer_norm", "silu", "gelu"),
}


def kind_of(name: str) -> str:
    """The kind of the operation called `name` (e.g. "aten::mkldnn_convolution"): a key of KINDS, or "other"."""
    return next((kind for kind, words in KINDS.items() if any(word in name for word in words)), "other")


def profile_forward(model, call, batch) -> dict[str, float]:
    """Milliseconds of self CPU time of one forward pass, summed by kind, and their total."""
    x, t, condition = batch
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as profiler:
        call(model, x, t, condition)
    ms = {kind: 0.0 for kind in [*KINDS, "other"]}
    for event in profiler.key_averages():
        ms[kind_of(event.key)] += event.self_cpu_time_total / 1000  # microseconds -> ms
    return {**ms, "total": sum(ms.values())}


def profile_pair(models: dict, calls: dict, batch, passes: int) -> dict[str, dict[str, float]]:
    """Each model's median milliseconds per forward pass, by kind, over `passes` profiled passes after two untimed
    ones; the models alternate pass by pass (A, B, B, A, ...), so that a slow spell of the machine hits both."""
    for name, model in models.items():
        model.eval()
        with torch.inference_mode():
            for _ in range(2):
                calls[name](model, *batch)
    profiled = {name: [] for name in models}
    for repeat in range(passes):
        for name in (list(models) if repeat % 2 == 0 else list(reversed(models))):
            profiled[name].append(profile_forward(models[name], calls[name], batch))
    return {name: {kind: round(statistics.median(row[kind] for row in rows), 1) for kind in rows[0]}
            for name, rows in profiled.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--channels", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--passes", type=int, default=9, help="profiled forward passes of each model")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="also write the table as JSON here")
    args = parser.parse_args()
    if args.batch < 1 or args.passes < 1 or args.threads < 1:
        parser.error("--batch, --passes and --threads must be at least 1")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    levels = len(args.channels)
    config = UNetConfig(in_channels=1, channels=tuple(args.channels), blocks_per_level=2,
                        attention_levels=(False,) * (levels - 1) + (True,), num_classes=10)
    B = args.batch
    batch = (torch.randn(B, 1, 28, 28), torch.randint(0, 1000, (B,)), {"class_labels": torch.randint(0, 11, (B,))})
    models = {"minidiff": UNet(config), "diffusers": diffusers_twin(config, 28)}
    rows = profile_pair(models, {"minidiff": call_ours, "diffusers": call_diffusers}, batch, args.passes)
    print(f"median ms of self CPU time per forward pass (batch {B}, {args.passes} passes each, "
          f"{torch.get_num_threads()} threads)")
    for kind in rows["minidiff"]:
        print(f"  {kind:32s} {rows['minidiff'][kind]:8.1f} {rows['diffusers'][kind]:8.1f}")
    if args.out is not None:
        record = {"command": " ".join(["benchmarks/profile_unet.py", *sys.argv[1:]]), "cpu": device_description("cpu"),
                  "torch": torch.__version__, "threads": torch.get_num_threads(), "batch": B, "passes": args.passes,
                  "config": config.to_dict(), "ms_per_forward": rows}
        atomic_write_bytes(args.out, (json.dumps(record, indent=1) + "\n").encode())


if __name__ == "__main__":
    main()
