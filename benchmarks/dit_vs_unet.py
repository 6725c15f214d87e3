"""A diffusion transformer against the U-Net, on Shapes latents with text, at equal training minutes.

Trains the `shapes_text` U-Net and the `shapes_text_dit` DiT at several widths (the same depth, patch size, heads of
32 channels), each for the same number of training minutes on the same cached latents, seed and thread count, and
measures each one: parameters (the denoiser; the text encoder, the same in all, apart), training images per second
(the run's own clock), training compute (forward FLOPs per image, counted by torch's FlopCounterMode, x 3 for the
backward pass, x images seen), sampling milliseconds per image (DPM-Solver++ 20 steps, guidance 3, median of three
calls) and prompt adherence read by the rule-based checker (`minidiff.measure.adherence`: training-distribution
captions and the held-out colour/shape pairs). Writes a JSON after every model and a PNG of adherence against
training compute; models already measured are skipped and a run cut short resumes, so it can be run in parts.

    .venv/bin/python benchmarks/dit_vs_unet.py --minutes 20 --widths 64 128 192
    .venv/bin/python benchmarks/dit_vs_unet.py --ship          # also copy the best DiT to data/checkpoints/

Equal minutes is equal compute only on one machine with nothing else running: run it alone (one heavy job at a time).
Speeds read from runs minutes apart swing with the machine's load; `--speed` times the contestants already trained
in --runs side by side instead, repeat by repeat on this process's CPU clock, and writes their paired speed-ups over
the U-Net to <--out>_speed.json (the table itself is left as it is). Speed does not depend on the weights, so
contestants trained a few hundred steps will do:

    .venv/bin/python benchmarks/dit_vs_unet.py --steps 200 --widths 64 192 --runs runs/speed --out runs/speed/t.json
    .venv/bin/python benchmarks/dit_vs_unet.py --widths 64 192 --runs runs/speed --speed --repeats 9
"""

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minidiff.files.atomic import atomic_write_bytes  # noqa: E402
from minidiff.files.device import device_description  # noqa: E402
from minidiff.measure.adherence import prompt_adherence  # noqa: E402
from minidiff.nets.dit import DiTConfig  # noqa: E402
from minidiff.pipeline import TextToImage  # noqa: E402
from minidiff.training.loop import train  # noqa: E402
from minidiff.training.presets import PRESETS  # noqa: E402

SHIPPED_NAME = "shapes_text_dit"


def backbone_config(name: str, minutes: float | None, steps: int | None, quick: bool):
    """The TrainConfig of one contestant: "unet" or "dit-WIDTH"; quick = the test-sized presets."""
    if name == "unet":
        config = PRESETS["tiny_latent" if quick else "shapes_text"]()
    else:
        config = PRESETS["tiny_dit" if quick else "shapes_text_dit"]()
        width = int(name.split("-")[1])
        # heads of 32 channels (at most 2 heads in quick mode, whose widths are tiny)
        heads = max(1, min(2, width // 8)) if quick else max(1, width // 32)
        config.dit = DiTConfig(**{**config.dit.to_dict(), "dim": width, "heads": heads})
    config.minutes, config.steps = minutes, steps
    config.sample_every_steps, config.checkpoint_every_minutes = None, (None if quick else 5.0)
    return config


def training_flops_per_image(pipe: TextToImage) -> int:
    """FLOPs of one training image: the forward pass (denoiser and text encoder, one image) counted by torch's
    FlopCounterMode (a multiply-add counts 2), x 3 for the forward and the backward (Kaplan et al. 2020, sec. 2.1)."""
    shape = pipe.info.data["image_shape"]
    x_t, t = torch.zeros(1, *shape), torch.tensor([500])
    tokens = pipe.tokens(["a large red circle in the top left"])  # (1, L)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        pipe.model(x_t, t, tokens)
    return 3 * counter.get_total_flops()


CAPTIONS = ["a large red circle in the top left", "a small blue square in the bottom right"]  # of the training set
SAMPLED_IMAGES = 8  # per timed sampling call


def sample(pipe: TextToImage, seed: int, steps: int = 20, images: int = SAMPLED_IMAGES) -> None:
    """One timed sampling call: `images` images of CAPTIONS in turn, DPM-Solver++ `steps` steps, guidance 3."""
    pipe([CAPTIONS[i % len(CAPTIONS)] for i in range(images)], steps=steps, guidance=3.0, seed=seed)


def sampling_ms_per_image(pipe: TextToImage, repeats: int = 3) -> float:
    """Median milliseconds per image of 8-image calls, DPM-Solver++ 20 steps, guidance 3, after a warm-up."""
    sample(pipe, seed=0, steps=2, images=2)  # warm-up
    times = []
    for repeat in range(repeats):
        start = time.perf_counter()
        sample(pipe, seed=repeat)
        times.append(1000 * (time.perf_counter() - start) / SAMPLED_IMAGES)
    return statistics.median(times)


def training_step(pipe: TextToImage, batch_size: int):
    """A function that takes one training step of the pipeline's model (text encoder and denoiser: forward, MSE
    against a noise target, backward, AdamW) on a fixed batch of random latents and captions of the training set,
    and leaves the model in eval mode."""
    shape, model = pipe.info.data["image_shape"], pipe.model
    tokens = pipe.tokens([CAPTIONS[i % len(CAPTIONS)] for i in range(batch_size)])  # (B, L)
    x_t, target = torch.randn(batch_size, *shape), torch.randn(batch_size, *shape)  # (B, C, H, W) each
    t = torch.randint(0, 1000, (batch_size,))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        model.train()  # dropout on, as in training
        loss = torch.nn.functional.mse_loss(model(x_t, t, tokens), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        model.eval()  # the pipeline samples with the model as it finds it: in eval mode, as loaded
    return step


def speed_race(runs: Path, names: list[str], repeats: int, batch_size: int) -> dict:
    """Time the contestants trained in runs/<name> side by side on this process's CPU clock: in each repeat, one
    training step each (`training_step`) and one 8-image sampling call each (as `sampling_ms_per_image`), the order
    reversed every other repeat. Returns each one's median training img/s and sampling ms/img, and its speed-ups over
    the U-Net: the median of the repeats' ratios, in which a slow spell of the machine that covers a repeat cancels."""
    pipes = {name: TextToImage.load(runs / name) for name in names}
    steps = {name: training_step(pipe, batch_size) for name, pipe in pipes.items()}
    for name in names:  # warm-up
        steps[name]()
        sample(pipes[name], seed=0, steps=2, images=2)
    train_s, sample_s = {name: [] for name in names}, {name: [] for name in names}
    for repeat in range(repeats):
        for name in (names if repeat % 2 == 0 else names[::-1]):
            start = time.process_time()
            steps[name]()
            train_s[name].append(time.process_time() - start)
            start = time.process_time()
            sample(pipes[name], seed=repeat)
            sample_s[name].append(time.process_time() - start)
    return {name: {"train_images_per_second": round(batch_size / statistics.median(train_s[name]), 1),
                   "sample_ms_per_image": round(1000 * statistics.median(sample_s[name]) / SAMPLED_IMAGES, 1),
                   "train_speedup_over_unet": round(statistics.median(
                       [u / d for u, d in zip(train_s["unet"], train_s[name])]), 3),
                   "sample_speedup_over_unet": round(statistics.median(
                       [u / d for u, d in zip(sample_s["unet"], sample_s[name])]), 3),
                   "train_seconds": train_s[name], "sample_seconds": sample_s[name]} for name in names}


def measure(name: str, folder: Path, n: int, heldout_n: int) -> dict:
    """Everything the table shows about one trained contestant."""
    pipe = TextToImage.load(folder)
    state = json.loads((folder / "train_state.json").read_text())
    images = state["step"] * state["config"]["batch_size"]
    flops = training_flops_per_image(pipe)
    return {"name": name, "parameters": sum(p.numel() for p in pipe.model.unet.parameters()),
            "encoder_parameters": sum(p.numel() for p in pipe.model.encoder.parameters()),
            "steps": state["step"], "minutes": round(state["training_minutes"], 2), "images_seen": images,
            "train_images_per_second": round(images / (60 * state["training_minutes"]), 1),
            "training_tflops": float(f"{flops * images / 1e12:.4g}"), "sample_ms_per_image": round(
                sampling_ms_per_image(pipe), 1),
            "adherence": prompt_adherence(pipe, n, "train"),
            "heldout_pairs": prompt_adherence(pipe, heldout_n, "heldout")}


def train_contestant(name: str, folder: Path, args, latents_from: Path | None) -> None:
    """Train (or resume) one contestant in `folder`; the latents are copied from the first run, encoded once."""
    config = backbone_config(name, args.minutes, args.steps, args.quick)
    resume = (folder / "train_state.json").exists()
    folder.mkdir(parents=True, exist_ok=True)
    if latents_from is not None and not resume:
        for cached in latents_from.glob("latents_*.safetensors"):
            shutil.copy(cached, folder)
    train(config, folder, resume=resume, device="cpu", command=" ".join(["python"] + sys.argv),
          progress=not args.quiet)


def plot(results: list[dict], out: Path) -> None:
    """All-four adherence against training compute, one point per contestant."""
    fig = Figure(figsize=(6.0, 3.6), layout="constrained")
    ax = fig.subplots()
    for row in results:
        marker = "s" if row["name"] == "unet" else "o"
        ax.scatter(row["training_tflops"], row["adherence"]["all"], marker=marker, s=40)
        point = (row["training_tflops"], row["adherence"]["all"])
        ax.annotate(f"{row['name']}\n{row['parameters'] / 1e6:.2f}M", point, textcoords="offset points",
                    xytext=(0, -24), ha="center", fontsize=8)  # below the point: the points sit near 1
    dits = sorted((row for row in results if row["name"] != "unet"), key=lambda row: row["training_tflops"])
    ax.plot([row["training_tflops"] for row in dits], [row["adherence"]["all"] for row in dits], lw=1, alpha=0.6)
    ax.set(xscale="log", xlabel="training compute (TFLOPs: 3 x forward FLOPs x images seen)",
           ylabel="all four attributes right", ylim=(0, 1.05))
    ax.set_title(f"DiT widths against the U-Net, {results[0]['minutes']:.0f} training minutes each", fontsize=10)
    computes = [row["training_tflops"] for row in results]
    ax.set_xlim(0.85 * min(computes), 1.15 * max(computes))  # room for the labels at both ends
    fig.savefig(out, dpi=120)


def ship(record: dict, runs: Path, checkpoints: Path) -> Path:
    """Copy the DiT with the best all-four adherence to CHECKPOINTS/shapes_text_dit, with its measurements and the
    whole table it won (`record`, the benchmark's JSON)."""
    best = max((row for row in record["results"] if row["name"] != "unet"), key=lambda row: row["adherence"]["all"])
    target = checkpoints / SHIPPED_NAME
    shutil.copy(runs / best["name"] / "model.safetensors", target.with_suffix(".safetensors"))
    info = json.loads((runs / best["name"] / "model.json").read_text())
    sweep = {"minutes": record["minutes"], "threads": record["threads"], "command": record["command"],
             "results": record["results"]}  # every contestant, so a chapter can show the whole table
    info["metrics"] = {**info.get("metrics", {}), "dit_vs_unet": best, "dit_vs_unet_sweep": sweep}
    atomic_write_bytes(target.with_suffix(".json"), (json.dumps(info, indent=2) + "\n").encode())
    return target


def report_speeds(args, names: list[str]) -> None:
    """--speed: time the trained contestants side by side, print their speeds and store them beside --out."""
    speeds = speed_race(args.runs, names, args.repeats, args.batch)
    for name, row in speeds.items():
        print(f"{name:>8}: train {row['train_images_per_second']:>7.1f} img/s "
              f"({row['train_speedup_over_unet']:.2f}x the U-Net), sample {row['sample_ms_per_image']:>6.1f} "
              f"ms/img ({row['sample_speedup_over_unet']:.2f}x)", flush=True)
    infos = {name: json.loads((args.runs / name / "model.json").read_text()) for name in names}
    record = {"cpu": device_description("cpu"), "torch": torch.__version__, "threads": args.threads,
              "repeats": args.repeats, "batch": args.batch, "clock": "process CPU time",
              "command": " ".join(["python"] + sys.argv), "speeds": speeds,
              "trained_by": {name: {"command": info["command"], "steps": info["step"]} for name, info in infos.items()}}
    atomic_write_bytes(args.out.with_name(args.out.stem + "_speed.json"),
                       (json.dumps(record, indent=2) + "\n").encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=20.0, help="training minutes of each model")
    parser.add_argument("--steps", type=int, default=None, help="train each for this many steps instead")
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 128, 192], help="DiT token widths")
    parser.add_argument("--n", type=int, default=300, help="training-distribution captions for adherence")
    parser.add_argument("--heldout-n", type=int, default=150, help="held-out colour/shape captions")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "dit_vs_unet")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "dit_vs_unet.json")
    parser.add_argument("--ship", action="store_true", help="copy the best DiT to --checkpoints")
    parser.add_argument("--checkpoints", type=Path, default=ROOT / "data" / "checkpoints")
    parser.add_argument("--quick", action="store_true", help="the test-sized presets (a smoke run)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--speed", action="store_true",
                        help="time the contestants already trained in --runs side by side (CPU clock), nothing else")
    parser.add_argument("--repeats", type=int, default=9, help="with --speed: timed repeats of each")
    parser.add_argument("--batch", type=int, default=128, help="with --speed: training batch (the presets' 128)")
    args = parser.parse_args()
    if args.threads < 1 or any(width < 4 or width % 4 for width in args.widths):
        parser.error("--threads must be at least 1 and every --widths a multiple of 4")
    if args.repeats < 1 or args.batch < 1:
        parser.error("--repeats and --batch must be at least 1")
    torch.set_num_threads(args.threads)
    names = ["unet"] + [f"dit-{width}" for width in args.widths]
    if args.speed:
        missing = [name for name in names if not (args.runs / name / "model.json").exists()]
        if missing:
            parser.error(f"--speed times trained contestants, and {missing} have no model in {args.runs}: train "
                         "them first, by steps and with an --out of their own (a table's measured models are not "
                         f"trained again), e.g. --steps 200 --widths {' '.join(map(str, args.widths))} "
                         f"--runs {args.runs} --out {args.runs / 'table.json'}")
        report_speeds(args, names)
        return
    previous = json.loads(args.out.read_text()) if args.out.exists() else {"results": []}
    done = {row["name"]: row for row in previous["results"]}
    results, command = [], previous.get("command")  # the command that trained the table: kept by a --ship alone
    for name in names + [name for name in done if name not in names]:  # the table's other rows are kept
        if name not in done:
            train_contestant(name, args.runs / name, args, None if name == "unet" else args.runs / "unet")
            done[name] = measure(name, args.runs / name, args.n, args.heldout_n)
            command = " ".join(["python"] + sys.argv)
        results.append(done[name])
        row = results[-1]
        print(f"{name:>8}: {row['parameters']:>9,} parameters, {row['train_images_per_second']:>7.1f} img/s, "
              f"{row['sample_ms_per_image']:>6.1f} ms/img, all four {row['adherence']['all']:.3f}", flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {"minutes": args.minutes, "steps": args.steps, "threads": args.threads,
                  "command": command, "results": results}
        atomic_write_bytes(args.out, (json.dumps(record, indent=2) + "\n").encode())
    plot(results, args.out.with_suffix(".png"))
    if args.ship:
        print("shipped", ship(record, args.runs, args.checkpoints))


if __name__ == "__main__":
    main()
