"""Speed of minidiff's U-Net against diffusers' UNet2DModel at the same configuration, on this CPU.

Both networks get the same channels, blocks per level, attention levels, heads, GroupNorm groups, AdaGN
("scale_shift") time conditioning, class embedding and dropout; their parameter counts are printed and must agree
within 5% (they are equal: tests/nets/test_unet.py loads our weights into this diffusers model and gets the same output).
Then, alternating the two models (A, B, A, B, ...) so that other load on the machine hits both alike:

- training: images/s of one step = forward + MSE loss + backward + AdamW step, in train mode;
- inference: seconds per forward pass under torch.inference_mode(), in eval mode.

Each number is the median over repeats, after warm-up. Run:  .venv/bin/python benchmarks/bench_unet.py
On a machine shared with other work, wall-clock times swing; `--threads 1 --clock cpu` measures the CPU time the
process itself used, which other processes barely change (with 2 threads CPU time would count threads waiting).
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from minidiff.nets.unet import UNet, UNetConfig, count_parameters


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


def call_ours(model, x, t, labels):
    return model(x, t, labels)


def call_diffusers(model, x, t, labels):
    return model(x, t, labels, return_dict=False)[0]


def training_step(model, call, optimizer, x, t, labels, target) -> None:
    loss = F.mse_loss(call(model, x, t, labels), target)
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
    x, t, labels, _ = batch
    start = clock()
    with torch.inference_mode():
        for _ in range(steps):
            call(model, x, t, labels)
    return clock() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per model and task (median is reported)")
    parser.add_argument("--steps", type=int, default=2, help="steps per timed repeat")
    parser.add_argument("--channels", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall-clock time, or the CPU time of this process (use with --threads 1)")
    args = parser.parse_args()
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    levels = len(args.channels)
    config = UNetConfig(in_channels=1, channels=tuple(args.channels), blocks_per_level=args.blocks,
                        attention_levels=(False,) * (levels - 1) + (True,), num_classes=10)
    image_size = 28
    models = {"minidiff": UNet(config), "diffusers": diffusers_twin(config, image_size)}
    calls = {"minidiff": call_ours, "diffusers": call_diffusers}
    counts = {name: count_parameters(model) for name, model in models.items()}
    print(f"config: {config}")
    print(f"input 1x{image_size}x{image_size}, batch {args.batch}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    for name, n in counts.items():
        print(f"  {name:9s} {n:,} parameters")
    gap = abs(counts["minidiff"] - counts["diffusers"]) / counts["diffusers"]
    assert gap < 0.05, f"parameter counts differ by {gap:.1%}: the two models are not the same configuration"

    B = args.batch
    batch = (torch.randn(B, 1, image_size, image_size), torch.randint(0, 1000, (B,)),
             torch.randint(0, 11, (B,)), torch.randn(B, 1, image_size, image_size))
    optimizers = {name: torch.optim.AdamW(model.parameters(), lr=1e-4) for name, model in models.items()}

    for name in models:  # warm-up: first calls allocate memory and pick kernels
        time_training(models[name], calls[name], optimizers[name], batch, 2)
        time_inference(models[name], calls[name], batch, 2)

    train_s = {name: [] for name in models}
    infer_s = {name: [] for name in models}
    for repeat in range(args.repeats):
        order = list(models) if repeat % 2 == 0 else list(reversed(models))  # A, B, B, A, A, B, ...
        for name in order:  # alternating, so that background load hits both alike
            train_s[name].append(time_training(models[name], calls[name], optimizers[name], batch, args.steps, clock) / args.steps)
            infer_s[name].append(time_inference(models[name], calls[name], batch, args.steps, clock) / args.steps)

    print(f"\n{args.clock} clock, median of {args.repeats} repeats x {args.steps} steps (other processes may share the CPU)")
    print(f"{'':10s} {'train img/s':>12s} {'infer s/batch':>14s}")
    for name in models:
        print(f"{name:10s} {B / statistics.median(train_s[name]):12.1f} {statistics.median(infer_s[name]):14.4f}")
    train_ratio = statistics.median(train_s["diffusers"]) / statistics.median(train_s["minidiff"])
    infer_ratio = statistics.median(infer_s["diffusers"]) / statistics.median(infer_s["minidiff"])
    print(f"{'ratio':10s} {train_ratio:11.2f}x {infer_ratio:13.2f}x   (minidiff speed / diffusers speed; > 1 = minidiff faster)")


if __name__ == "__main__":
    main()
