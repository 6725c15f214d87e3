"""What latent space saves: pixel-space vs latent-space diffusion on Shapes, measured on this machine.

Two U-Nets of equal width (the same channels, blocks and conditioning), one denoising 32 x 32 x 3 pixels, one the
autoencoder's 8 x 8 x 4 latents, and for each:
- training throughput: images per second for full training steps (forward, backward, AdamW), batch --batch;
  the latent side also pays to encode each image once (the cache), reported apart and amortised over --epochs;
- sampling time per image: --steps network evaluations of a batch of --batch, plus, for latents, one decode.
The ratios are the answer to "how much cheaper is latent diffusion per training image and per sampled image".

    .venv/bin/python benchmarks/latent_cost.py                  # ~2 minutes; prints a Markdown table and JSON
    .venv/bin/python benchmarks/latent_cost.py --quality-minutes 10 --out benchmarks/results/latent_cost.json

Quality at equal CPU time (--quality-minutes M, off by default: it takes 2 M minutes and more): train both models
for the same minutes, one after the other, then read 200 samples of each (DDIM, 20 steps, guidance 3, attributes
drawn from the train split) with the attribute checker (minidiff.shape_checker).
"""

import argparse
import json
import time
from pathlib import Path

import torch

from minidiff.data.shapes import SIZE, shapes
from minidiff.diffusion.samplers import sample_ddim
from minidiff.diffusion.schedule import make_schedule
from minidiff.files.atomic import atomic_write_bytes
from minidiff.measure.shape_checker import adherence
from minidiff.models import autoencoder_for, load_autoencoder, load_model
from minidiff.nets.autoencoder import LATENT_SIZE, Autoencoder
from minidiff.nets.conditioning import ConditionedUNet, attribute_tokens
from minidiff.nets.unet import count_parameters
from minidiff.pipeline import sample_shapes, token_denoiser
from minidiff.training.loop import train
from minidiff.training.presets import shapes_latent_config, shapes_pixel_config

CONFIGS = {"pixel": shapes_pixel_config, "latent": shapes_latent_config}  # equal widths (see shapes_pixel_config)


def equal_width_models() -> dict[str, ConditionedUNet]:
    """The two U-Nets of the comparison, freshly initialised: pixel space and latent space."""
    models = {}
    for space, make_config in CONFIGS.items():
        torch.manual_seed(0)
        config = make_config()
        models[space] = ConditionedUNet(config.unet, config.encoder)
    return models


def random_tokens(n: int) -> torch.Tensor:
    """n attribute conditions, all the same (the cost does not depend on which)."""
    return attribute_tokens([{"colour": "red", "shape": "circle", "size": "small", "position": "top left"}] * n)


def seconds_per_call(function, repeats: int) -> float:
    """Median wall-clock seconds of `function()` over `repeats` calls, after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def training_step_seconds(model: ConditionedUNet, shape: tuple[int, ...], repeats: int) -> float:
    """Seconds for one full training step (forward, backward, AdamW) on a batch of `shape`."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, t, tokens = torch.randn(shape), torch.randint(0, 1000, (shape[0],)), random_tokens(shape[0])
    model.train()

    def step():
        loss = (model(x, t, tokens) - x).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return seconds_per_call(step, repeats)


@torch.inference_mode()
def sampling_seconds(model: ConditionedUNet, shape: tuple[int, ...], steps: int, repeats: int,
                     autoencoder: Autoencoder | None = None) -> float:
    """Seconds to sample a batch of `shape` with `steps` DDIM steps, plus one decode when an autoencoder is given."""
    model.eval()
    schedule, tokens = make_schedule("cosine", 1000), random_tokens(shape[0])

    def sample():
        z0 = sample_ddim(token_denoiser(model, tokens), shape, schedule, "v", steps=steps, clip_x0=False,
                         generator=torch.Generator().manual_seed(0))
        if autoencoder is not None:
            autoencoder.decode(z0)
    return seconds_per_call(sample, repeats)


@torch.inference_mode()
def encoding_seconds(autoencoder: Autoencoder, batch: int, repeats: int) -> float:
    """Seconds to encode a batch of images (the one-time cost of the latent cache)."""
    images = torch.rand(batch, 3, SIZE, SIZE) * 2 - 1
    return seconds_per_call(lambda: autoencoder.encode_mean(images), repeats)


def measure(batch: int, steps: int, repeats: int, epochs: int) -> dict:
    """Every figure of the table, in seconds per image, and the ratios pixel / latent."""
    autoencoder = load_autoencoder("shapes_vae")[0].eval()
    models = equal_width_models()
    shapes = {"pixel": (batch, 3, SIZE, SIZE),
              "latent": (batch, autoencoder.config.latent_channels, LATENT_SIZE, LATENT_SIZE)}
    result = {"batch": batch, "sampling_steps": steps, "epochs_for_amortising": epochs,
              "parameters": {space: count_parameters(model) for space, model in models.items()},
              "torch_threads": torch.get_num_threads()}
    for space, model in models.items():
        result[f"{space}_train_seconds_per_image"] = training_step_seconds(model, shapes[space], repeats) / batch
        coder = autoencoder if space == "latent" else None
        result[f"{space}_sample_seconds_per_image"] = sampling_seconds(model, shapes[space], steps, 1, coder) / batch
    result["encode_seconds_per_image"] = encoding_seconds(autoencoder, batch, repeats) / batch
    latent_train = result["latent_train_seconds_per_image"] + result["encode_seconds_per_image"] / epochs
    result["train_ratio"] = result["pixel_train_seconds_per_image"] / latent_train
    result["sample_ratio"] = result["pixel_sample_seconds_per_image"] / result["latent_sample_seconds_per_image"]
    return result


@torch.inference_mode()
def sample_for_quality(run, config, n: int, guidance: float, steps: int, out: Path) -> tuple[torch.Tensor, list]:
    """n images for random train-split attributes (seed 1, not the training seed), DDIM, from a run's EMA weights."""
    _, _, attributes = shapes(n, "train", seed=1)
    tokens = attribute_tokens(attributes)
    schedule, prediction = config.diffusion.noise_schedule(), config.diffusion.prediction
    generator = torch.Generator().manual_seed(0)
    if config.data == "shapes_latents":
        _, info = load_model(out)
        autoencoder, scale_factor = autoencoder_for(info)
        images = sample_shapes(run.ema, schedule, prediction, autoencoder, scale_factor, tokens, "ddim", steps,
                               guidance, generator=generator)
    else:
        images = sample_ddim(token_denoiser(run.ema, tokens, guidance), (n, 3, SIZE, SIZE), schedule, prediction,
                             steps=steps, generator=generator).clamp(-1, 1)
    return images, attributes


def quality_at_equal_time(minutes: float, out: Path, n: int = 200, guidance: float = 3.0, steps: int = 20) -> dict:
    """Train the pixel and the latent model for the same minutes (one after the other, same threads), then read
    n samples of each with the attribute checker. Encoding the latents happens before the clock starts (a cache)."""
    result = {"minutes": minutes, "samples": n, "guidance": guidance, "sampling_steps": steps}
    for space, make_config in CONFIGS.items():
        config = make_config()
        config.steps, config.minutes = None, minutes
        config.sample_every_steps, config.checkpoint_every_minutes = None, None
        run = train(config, out / space, device="cpu", command=f"benchmarks/latent_cost.py ({space})")
        images, attributes = sample_for_quality(run, config, n, guidance, steps, out / space)
        result[space] = {"training_steps": run.step, "training_images": run.step * config.batch_size,
                         **adherence(images, attributes)}
    return result


def table(result: dict) -> str:
    """The figures as a Markdown table."""
    rows = ["| | pixel 32x32x3 | latent 8x8x4 | pixel / latent |", "|---|---:|---:|---:|",
            f"| U-Net parameters | {result['parameters']['pixel']:,} | {result['parameters']['latent']:,} | |",
            f"| training, ms per image | {1e3 * result['pixel_train_seconds_per_image']:.2f} | "
            f"{1e3 * result['latent_train_seconds_per_image']:.2f} "
            f"(+ {1e3 * result['encode_seconds_per_image']:.2f} to encode, once) | {result['train_ratio']:.1f}x |",
            f"| sampling, {result['sampling_steps']} steps, ms per image | "
            f"{1e3 * result['pixel_sample_seconds_per_image']:.1f} | "
            f"{1e3 * result['latent_sample_seconds_per_image']:.1f} (decode included) | {result['sample_ratio']:.1f}x |"]
    return "\n".join(rows)


def quality_table(quality: dict) -> str:
    """Attribute adherence of the two models after the same training time, as a Markdown table."""
    rows = [f"| after {quality['minutes']:g} CPU-minutes of training | training images | colour | shape | size | "
            "position | all four |", "|---|---:|---:|---:|---:|---:|---:|"]
    for space in CONFIGS:
        q = quality[space]
        rows.append(f"| {space} | {q['training_images']:,} | {q['colour']:.0%} | {q['shape']:.0%} | {q['size']:.0%} | "
                    f"{q['position']:.0%} | {q['all']:.0%} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="sampling steps (default: 20)")
    parser.add_argument("--repeats", type=int, default=3, help="timed training steps per model (median)")
    parser.add_argument("--epochs", type=int, default=50, help="epochs that share the one-time encoding cost")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    parser.add_argument("--quality-minutes", type=float, default=None,
                        help="also train both models this many minutes each and compare their samples' adherence")
    parser.add_argument("--runs", type=Path, default=Path("runs/latent_cost"), help="run folders for --quality-minutes")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = measure(args.batch, args.steps, args.repeats, args.epochs)
    print(table(result))
    if args.quality_minutes is not None:
        result["quality"] = quality_at_equal_time(args.quality_minutes, args.runs)
        print(quality_table(result["quality"]))
    print(json.dumps(result, indent=1))
    if args.out is not None:
        atomic_write_bytes(args.out, (json.dumps(result, indent=1) + "\n").encode())


if __name__ == "__main__":
    main()
