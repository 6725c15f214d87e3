"""Speed of minidiff's U-Nets against diffusers' at the same configuration, on this CPU.

Two pairs, each run side by side in the same process:

- the class U-Net (MNIST-sized, 1x28x28, batch 64) against diffusers' UNet2DModel: the same channels, blocks per level,
  attention levels, heads, GroupNorm groups, AdaGN ("scale_shift") time conditioning, class embedding and dropout;
  equal parameter counts (tests/nets/test_unet.py loads our weights into this diffusers model and gets our output);
- the latent text U-Net of the shapes_text preset (4x8x8 latents, a 10-token context of width 64) against diffusers'
  UNet2DConditionModel at its configuration. diffusers wraps every cross-attention in a transformer block with a
  GEGLU feed-forward of 12 C^2 weights, which ours does not have; the twin's feed-forwards are removed (`nn.Identity`)
  so that both are the same-sized network (parameter counts printed, within 5%).

For each pair, alternating the two models (A, B, B, A, ...) so that other load on the machine hits both alike:

- training: images/s of one step = forward + MSE loss + backward + AdamW step, in train mode;
- inference: seconds per forward pass under torch.inference_mode(), in eval mode;
- the forward pass's achieved GFLOP/s (its FLOPs counted by torch.utils.flop_counter.FlopCounterMode over the
  inference time), beside this CPU's measured sgemm peak (the fastest timed n x n torch.mm, n = 1024, 2048, 4096,
  at the same thread count) and the speed of one 3x3 convolution of the text U-Nets' shapes.

Each speed is the median over repeats, after warm-up (the sgemm peak and the convolution: the best of 5).
Run:  .venv/bin/python benchmarks/bench_unet.py   (`--out FILE.json` also stores every timing, with the command)
`--compile` times both models through torch.compile instead (Inductor generates fused C++ kernels for the CPU; it
needs a C++ compiler, and compiling each model for training and for inference takes minutes on a CPU).
On a machine shared with other work, wall-clock times swing; `--threads 1 --clock cpu` measures the CPU time the
process itself used, which other processes change less (with 2 threads CPU time would count threads waiting), but
not nothing: on a virtual machine, work elsewhere on the host can slow this process's own cycles too (on the
course's 2-core machine the text pair's training ratio of medians, one thread, ranged from 1.01x to 1.28x over six
runs of the same code).
The "paired" line is therefore the one to quote: the median (and quartiles) of the ratio taken repeat by repeat,
the two models timed back to back, so that a slow spell of the machine cancels in each ratio.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from minidiff.files.atomic import atomic_write_bytes
from minidiff.files.device import device_description
from minidiff.nets.text import MAX_LENGTH
from minidiff.nets.unet import UNet, UNetConfig, count_parameters
from minidiff.training.presets import shapes_text_config


def diffusers_twin(config: UNetConfig, image_size: int):
    """diffusers' UNet2DModel built to match a minidiff UNetConfig.

    diffusers fixes the width of an attention head where we fix their number, so the two agree on every level whose
    channels equal channels[-1]; this script puts attention only at the last level (and in the middle).
    """
    from diffusers import UNet2DModel

    down_types = tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in config.attention_levels)
    up_types = tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(config.attention_levels))
    return UNet2DModel(
        sample_size=image_size,
        in_channels=config.in_channels,
        out_channels=config.output_channels,
        block_out_channels=config.channels,
        layers_per_block=config.blocks_per_level,
        down_block_types=down_types,
        up_block_types=up_types,
        attention_head_dim=config.channels[-1] // config.heads,  # diffusers fixes the head width, we fix the count
        flip_sin_to_cos=False, freq_shift=0,  # [sin, cos] embedding, as ours
        norm_num_groups=config.groups,
        attn_norm_num_groups=config.groups,  # the middle attention normalises its input, as ours does
        resnet_time_scale_shift="scale_shift",  # AdaGN, as ours
        time_embedding_dim=config.embed_dim,
        num_class_embeds=None if config.num_classes is None else config.num_classes + 1,
        dropout=config.dropout,
    )


def diffusers_text_twin(config: UNetConfig, image_size: int):
    """diffusers' UNet2DConditionModel built to match a minidiff UNetConfig with a text context (cross-attention at
    every level and in the middle), its transformer blocks' feed-forwards removed: ours has none."""
    from diffusers import UNet2DConditionModel

    model = UNet2DConditionModel(
        sample_size=image_size,
        in_channels=config.in_channels,
        out_channels=config.output_channels,
        block_out_channels=config.channels,
        layers_per_block=config.blocks_per_level,
        down_block_types=("CrossAttnDownBlock2D",) * config.levels,
        up_block_types=("CrossAttnUpBlock2D",) * config.levels,
        attention_head_dim=config.heads,  # diffusers reads this argument as the number of heads
        cross_attention_dim=config.context_dim,
        flip_sin_to_cos=False, freq_shift=0,  # [sin, cos] embedding, as ours
        norm_num_groups=config.groups,
        resnet_time_scale_shift="scale_shift",  # AdaGN, as ours
        time_embedding_dim=config.embed_dim,
        dropout=config.dropout,
    )
    for module in model.modules():
        if hasattr(module, "ff") and hasattr(module, "attn2"):  # a BasicTransformerBlock
            module.ff = nn.Identity()
    return model


def call_ours(model, x, t, condition):
    return model(x, t, **condition)


def call_diffusers(model, x, t, condition):
    if "context" in condition:  # the text twin: diffusers' names for the context and its mask
        return model(x, t, encoder_hidden_states=condition["context"],
                     encoder_attention_mask=condition["context_mask"].float(), return_dict=False)[0]
    return model(x, t, condition["class_labels"], return_dict=False)[0]


def training_step(model, call, optimizer, x, t, condition, target) -> None:
    loss = F.mse_loss(call(model, x, t, condition), target)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def time_training(model, call, optimizer, batch, steps: int, clock=time.perf_counter) -> float:
    """Seconds for `steps` training steps."""
    model.train()
    start = clock()
    for _ in range(steps):
        training_step(model, call, optimizer, *batch)
    return clock() - start


def time_inference(model, call, batch, steps: int, clock=time.perf_counter) -> float:
    """Seconds for `steps` forward passes under inference_mode."""
    model.eval()
    x, t, condition, _ = batch
    start = clock()
    with torch.inference_mode():
        for _ in range(steps):
            call(model, x, t, condition)
    return clock() - start


def forward_flops(model, call, batch) -> int:
    """Floating-point operations of one forward pass (a multiply-add counts 2), as torch's FlopCounterMode counts
    them: convolutions, matrix products and attention; the elementwise work (norms, SiLU, adds) is not counted."""
    x, t, condition, _ = batch
    model.eval()
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        call(model, x, t, condition)
    return counter.get_total_flops()


def fastest_seconds(clock, work, repeats: int) -> float:
    """The shortest of `repeats` timed calls of work(), after one untimed call (a warm-up)."""
    work()
    best = float("inf")
    for _ in range(repeats):
        start = clock()
        work()
        best = min(best, clock() - start)
    return best


def sgemm_peak(clock, sizes: tuple[int, ...] = (1024, 2048, 4096), repeats: int = 5) -> float:
    """GFLOP/s of the fastest of `repeats` float32 n x n matrix products for each n in `sizes`: this CPU's practical
    sgemm peak. One size alone can fall short of it (on one machine 2048 reached 85% of what 4096 did)."""
    best = 0.0
    for size in sizes:
        a, b = torch.randn(size, size), torch.randn(size, size)
        best = max(best, 2 * size**3 / fastest_seconds(clock, lambda: torch.mm(a, b), repeats) / 1e9)
    return best


def conv_speed(clock, repeats: int = 5) -> float:
    """GFLOP/s of the fastest of `repeats` 3x3 convolutions of 128 to 128 channels on a batch of 128 8 x 8 maps in
    channels-last layout, a shape both text U-Nets run: what oneDNN's convolution kernel reaches on this CPU."""
    x = torch.randn(128, 128, 8, 8).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(128, 128, 3, 3)
    seconds = fastest_seconds(clock, lambda: F.conv2d(x, weight, padding=1), repeats)
    return 2 * 128 * 128 * 8 * 8 * 128 * 9 / seconds / 1e9  # a multiply-add per weight, input channel and output pixel


def compare(title: str, models: dict, calls: dict, batch, repeats: int, steps: int, clock, clock_name: str,
            compiled: bool = False) -> dict:
    """Print the parameter counts, then train img/s, inference s/batch and forward GFLOP/s of each model; return
    the same figures, with every repeat's timings, for --out. With compiled, both models are timed through
    torch.compile (their FLOPs are counted on the eager models, which FlopCounterMode can see into)."""
    counts = {name: count_parameters(model) for name, model in models.items()}
    B = batch[0].shape[0]
    print(f"\n== {title}: input {tuple(batch[0].shape[1:])}, batch {B}")
    for name, n in counts.items():
        print(f"  {name:9s} {n:,} parameters")
    gap = abs(counts["minidiff"] - counts["diffusers"]) / counts["diffusers"]
    assert gap < 0.05, f"parameter counts differ by {gap:.1%}: the two models are not the same configuration"
    optimizers = {name: torch.optim.AdamW(model.parameters(), lr=1e-4) for name, model in models.items()}
    flops = {name: forward_flops(models[name], calls[name], batch) for name in models}
    if compiled:  # the same modules and parameters, run through Inductor's generated kernels
        models = {name: torch.compile(model) for name, model in models.items()}
        print("both models compiled with torch.compile: the warm-up compiles them (minutes on a CPU)")

    for name in models:  # warm-up: first calls allocate memory and pick kernels (and compile, with --compile)
        time_training(models[name], calls[name], optimizers[name], batch, 2)
        time_inference(models[name], calls[name], batch, 2)

    train_s = {name: [] for name in models}
    infer_s = {name: [] for name in models}
    for repeat in range(repeats):
        order = list(models) if repeat % 2 == 0 else list(reversed(models))  # A, B, B, A, A, B, ...
        for name in order:  # alternating, so that background load hits both alike
            train_s[name].append(time_training(models[name], calls[name], optimizers[name], batch, steps, clock) / steps)
        for name in order:  # the two models' timings of one task back to back: see paired_ratios
            infer_s[name].append(time_inference(models[name], calls[name], batch, steps, clock) / steps)

    print(f"{clock_name} clock, median of {repeats} repeats x {steps} steps (other processes may share the CPU)")
    print(f"{'':10s} {'train img/s':>12s} {'infer s/batch':>14s} {'fwd GFLOP':>10s} {'fwd GFLOP/s':>12s}")
    for name in models:
        infer = statistics.median(infer_s[name])
        print(f"{name:10s} {B / statistics.median(train_s[name]):12.1f} {infer:14.4f} {flops[name] / 1e9:10.2f} "
              f"{flops[name] / infer / 1e9:12.1f}")
    train_ratio = statistics.median(train_s["diffusers"]) / statistics.median(train_s["minidiff"])
    infer_ratio = statistics.median(infer_s["diffusers"]) / statistics.median(infer_s["minidiff"])
    print(f"{'ratio':10s} {train_ratio:11.2f}x {infer_ratio:13.2f}x   (minidiff speed / diffusers speed; > 1 = minidiff faster)")
    train_low, train_mid, train_high = paired_ratios(train_s["diffusers"], train_s["minidiff"])
    infer_low, infer_mid, infer_high = paired_ratios(infer_s["diffusers"], infer_s["minidiff"])
    print(f"{'paired':10s} {train_mid:11.2f}x {infer_mid:13.2f}x   (median of each repeat's ratio; quartiles "
          f"{train_low:.2f}-{train_high:.2f}x and {infer_low:.2f}-{infer_high:.2f}x)")
    return {"batch": B, "parameters": counts, "forward_flops": flops, "train_seconds_per_step": train_s,
            "inference_seconds_per_batch": infer_s,
            "ratio_of_medians": {"train": train_ratio, "inference": infer_ratio},
            "paired_quartiles": {"train": [train_low, train_mid, train_high],
                                 "inference": [infer_low, infer_mid, infer_high]}}


def paired_ratios(theirs: list[float], ours: list[float]) -> tuple[float, float, float]:
    """Quartiles (lower, median, upper) of the speed ratio taken repeat by repeat, theirs[i] / ours[i] (seconds).

    The two models of one repeat run back to back, so a slow spell of the machine that covers the repeat scales both
    times and cancels in their ratio. The ratio of the two medians can instead take one model's median from a slow
    repeat and the other's from a fast one, when slow spells cover about half of the repeats."""
    ratios = [a / b for a, b in zip(theirs, ours)]
    if len(ratios) < 2:
        return ratios[0], ratios[0], ratios[0]
    low, mid, high = statistics.quantiles(ratios, n=4, method="inclusive")  # within the data, however few
    return low, mid, high


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64, help="batch of the class U-Net")
    parser.add_argument("--text-batch", type=int, default=128, help="batch of the text U-Net (shapes_text trains with 128)")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per model and task (median is reported)")
    parser.add_argument("--steps", type=int, default=2, help="steps per timed repeat")
    parser.add_argument("--channels", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall-clock time, or the CPU time of this process (use with --threads 1)")
    parser.add_argument("--only", choices=["class", "text"], default=None, help="run one of the two pairs")
    parser.add_argument("--out", type=Path, default=None, help="also write every figure and timing as JSON here")
    parser.add_argument("--compile", action="store_true",
                        help="time both models through torch.compile (Inductor's fused kernels) instead of eagerly")
    args = parser.parse_args()
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    result = {"command": " ".join(["benchmarks/bench_unet.py", *sys.argv[1:]]), "torch": torch.__version__,
              "cpu": device_description("cpu"), "threads": torch.get_num_threads(),
              "clock": args.clock, "compiled": args.compile, "sgemm_peak_gflops": sgemm_peak(clock),
              "conv_gflops": conv_speed(clock)}
    print(f"sgemm peak (n x n torch.mm, n = 1024, 2048, 4096, best of 5 each, {args.clock} clock): "
          f"{result['sgemm_peak_gflops']:.1f} GFLOP/s")
    print(f"3x3 convolution (128 -> 128 channels, 8 x 8, batch 128, channels-last, best of 5, {args.clock} clock): "
          f"{result['conv_gflops']:.1f} GFLOP/s")
    calls = {"minidiff": call_ours, "diffusers": call_diffusers}

    if args.only in (None, "class"):
        levels = len(args.channels)
        config = UNetConfig(in_channels=1, channels=tuple(args.channels), blocks_per_level=args.blocks,
                            attention_levels=(False,) * (levels - 1) + (True,), num_classes=10)
        image_size, B = 28, args.batch
        print(f"\nclass U-Net config: {config}")
        batch = (torch.randn(B, 1, image_size, image_size), torch.randint(0, 1000, (B,)),
                 {"class_labels": torch.randint(0, 11, (B,))}, torch.randn(B, 1, image_size, image_size))
        models = {"minidiff": UNet(config), "diffusers": diffusers_twin(config, image_size)}
        result["class"] = compare("class U-Net vs UNet2DModel", models, calls, batch, args.repeats, args.steps, clock,
                                  args.clock, args.compile)

    if args.only in (None, "text"):
        config = shapes_text_config().unet
        size, B = 8, args.text_batch
        print(f"\ntext U-Net config (shapes_text): {config}")
        lengths = torch.randint(6, MAX_LENGTH + 1, (B,))  # captions of 6 to 10 tokens, then padding
        mask = torch.arange(MAX_LENGTH)[None, :] < lengths[:, None]  # (B, L), True = real token
        condition = {"context": torch.randn(B, MAX_LENGTH, config.context_dim), "context_mask": mask}
        batch = (torch.randn(B, config.in_channels, size, size), torch.randint(0, 1000, (B,)), condition,
                 torch.randn(B, config.in_channels, size, size))
        models = {"minidiff": UNet(config), "diffusers": diffusers_text_twin(config, size)}
        result["text"] = compare("text U-Net vs UNet2DConditionModel (no feed-forward)", models, calls, batch,
                                 args.repeats, args.steps, clock, args.clock, args.compile)
    if args.out is not None:
        atomic_write_bytes(args.out, (json.dumps(result, indent=1) + "\n").encode())
        print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
