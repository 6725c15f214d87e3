"""`python -m minidiff sample`: draw images from a trained model and write them to a folder.

    python -m minidiff sample --model mnist --label 7 --n 16 --seed 0 --sampler ddpm --steps 1000 --out DIR
    python -m minidiff sample --model mnist --label 7 --sampler dpm++ --steps 20 --guidance 3 --out DIR
    python -m minidiff sample --model runs/mnist_flow --sampler flow_heun --steps 10 --guidance 2 --out DIR  # flow
    python -m minidiff sample --prompt "a large red circle in the top left" --out DIR   # text to image
    python -m minidiff sample --prompt "a blue circle" --init-image in.png --strength 0.6 --out DIR  # img2img
    python -m minidiff sample --prompt "a green square" --init-image in.png --mask mask.png --out DIR  # inpainting

A rectified-flow model (prediction "flow") draws with the flow samplers, flow_euler (its default), flow_midpoint
and flow_heun, on --steps even steps in t (default 50); the VP samplers, and --spacing, are for the other models.
With --prompt the model defaults to the shipped text-to-image model, the sampler to DPM-Solver++ with 20 steps and
guidance to 3, and the GIF shows each step's decoded prediction (minidiff.pipeline).

writes DIR/000.png, DIR/001.png, ... (each image at its native resolution), DIR/grid.png (all of them),
DIR/denoise.gif (the first few images on their way from noise to picture) and DIR/meta.json (every setting:
sampler, steps, spacing, eta, guidance, the number of network evaluations and the time taken), each atomically
(`minidiff.files.images.write_folder`). The sampling itself is `minidiff.diffusion.samplers.sample`.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from minidiff.cli.options import check_counts, check_guidance_option, check_seed, use_threads
from minidiff.data.pixels import from_model
from minidiff.diffusion.flow import FLOW
from minidiff.diffusion.guidance import guided_denoiser
from minidiff.diffusion.loop import Denoiser, DenoisingStep, model_denoiser
from minidiff.diffusion.samplers import FLOW_SAMPLERS, SAMPLERS, sample
from minidiff.diffusion.steps import VARIANCES
from minidiff.diffusion.timesteps import SPACINGS
from minidiff.files.checkpoint import checkpoint_stem
from minidiff.files.device import resolve_device
from minidiff.files.images import picture_grid, read_image, read_mask, write_folder
from minidiff.models import load_model
from minidiff.nets.conditioning import EncoderConfig
from minidiff.nets.prompts import token_names
from minidiff.pipeline import DEFAULT_MODEL, TextToImage

GIF_IMAGES = 4  # how many of the images the GIF follows
GIF_FRAMES = 40  # frames of the GIF at most, evenly spread over the steps


def class_labels(n: int, label: int | str | None, num_classes: int | None) -> torch.Tensor | None:
    """The label of each image: all `label`, or 0, 1, 2, ... in turn when label is None; None when unconditional.

    label = "null" (or num_classes) is the null class: samples from the unconditional model that guidance trains.
    """
    if num_classes is None:
        if label is not None:
            raise ValueError("this model is not class-conditional; leave out --label")
        return None
    if label is None:
        return torch.arange(n) % num_classes
    if label == "null":
        label = num_classes
    if not 0 <= label <= num_classes:
        raise ValueError(f"label {label} is outside 0 ... {num_classes - 1} for this model, trained on {num_classes} "
                         f"classes (or 'null' for the null class, {num_classes})")
    return torch.full((n,), label, dtype=torch.long)


class GifRecorder:
    """A sampler callback that keeps the first few images of evenly spaced steps, as GIF frames."""

    def __init__(self, total_steps: int, images: int = GIF_IMAGES, frames: int = GIF_FRAMES):
        self.images = images
        self.keep = set(np.linspace(0, total_steps - 1, min(frames, total_steps)).round().astype(int).tolist())
        self.frames: list[np.ndarray] = []
        self.nfe = 0

    def __call__(self, step: DenoisingStep) -> None:
        if step.index == 0:
            self.frames.append(self.frame(step.x_t))  # x_T, pure noise
        self.add_frame(step.index, step.x_prev)
        self.nfe = step.nfe

    def add_frame(self, index: int, x: torch.Tensor) -> None:
        """Keep x (B, C, H, W) in [-1, 1] as a frame if step `index` is one of the kept ones."""
        if index in self.keep:
            self.frames.append(self.frame(x))

    def frame(self, x: torch.Tensor) -> np.ndarray:
        images = from_model(x[:self.images])  # (B, C, H, W) in [-1, 1] -> (B, H, W, C) uint8, clipped
        return picture_grid(images, columns=len(images))


def sampler_options(args: argparse.Namespace, default_sampler: str = "ddpm") -> dict:
    """The options that only one sampler of a VP model takes: DDPM's variance, DDIM's eta."""
    sampler = args.sampler or default_sampler
    if sampler in FLOW_SAMPLERS:
        raise ValueError(f"--sampler {sampler} draws from rectified-flow models (prediction 'flow'); this model "
                         f"samples with one of {', '.join(sorted(SAMPLERS))}")
    if args.eta is not None and sampler != "ddim":
        raise ValueError(f"--eta is DDIM's; leave it out for --sampler {sampler}")
    if sampler == "ddpm":
        return {"variance": args.variance}
    if sampler == "ddim":
        return {"eta": 0.0 if args.eta is None else args.eta}
    return {}


def flow_options(args: argparse.Namespace) -> dict:
    """A rectified-flow model's sampler: one of the flow samplers, which step evenly in t and so take no spacing,
    and none of DDPM's or DDIM's options."""
    if args.sampler not in FLOW_SAMPLERS:
        raise ValueError(f"this is a rectified-flow model (prediction 'flow'): sample it with --sampler "
                         f"{' / '.join(sorted(FLOW_SAMPLERS))}, not {args.sampler}")
    if args.spacing != "linspace" or args.eta is not None:
        raise ValueError("--spacing and --eta are for the VP samplers; the flow samplers step evenly in t")
    return {}


def make_denoiser(model: torch.nn.Module, labels: torch.Tensor | None, guidance: float | None,
                  rescale: float) -> Denoiser:
    """The plain conditional denoiser, or the classifier-free guided one when --guidance is given."""
    if guidance is None:
        if rescale != 0.0:
            raise ValueError("--guidance-rescale needs --guidance")
        return model_denoiser(model, class_labels=labels)
    if labels is None:
        raise ValueError("--guidance needs a class-conditional model (this one has no classes); leave it out")
    return guided_denoiser(model, guidance, class_labels=labels, rescale=rescale)



def prompt_to_folder(args: argparse.Namespace) -> Path:
    """Text to image: --prompt (and --negative-prompt) through minidiff.pipeline, written like class samples."""

    if args.label is not None:
        raise ValueError("--label is for class-conditional models; a text model takes --prompt only")
    model = DEFAULT_MODEL if args.model is None else args.model
    init_image = None if args.init_image is None else read_image(args.init_image)
    mask = None if args.mask is None else read_mask(args.mask)
    if init_image is None and (mask is not None or args.strength is not None):
        raise ValueError("--strength and --mask edit an image: give it with --init-image")
    pipe = TextToImage.load(model, args.device)
    steps = 20 if args.steps is None else args.steps
    guidance = 3.0 if args.guidance is None else args.guidance
    recorder = GifRecorder(total_steps=steps)
    result = pipe(args.prompt, n=args.n, negative_prompt=args.negative_prompt, sampler=args.sampler or "dpm++",
                  steps=steps, guidance=guidance, rescale=args.guidance_rescale, seed=args.seed,
                  callback=lambda step: recorder.add_frame(step.latent.index, step.x0_image),
                  init_image=init_image, strength=args.strength, mask=mask,
                  spacing=args.spacing, **sampler_options(args, default_sampler="dpm++"))
    settings = {"model": str(checkpoint_stem(model)), "model_step": pipe.info.step, "prompt": args.prompt,
                "negative_prompt": args.negative_prompt, "n": args.n, "seed": args.seed,
                "sampler": args.sampler or "dpm++", "steps": steps, "spacing": args.spacing, "guidance": guidance,
                "guidance_rescale": args.guidance_rescale, "init_image": args.init_image,
                "strength": result.strength, "start_timestep": result.start_timestep, "mask": args.mask,
                "device": str(pipe.device), "nfe": result.nfe,
                "seconds": round(result.seconds, 3), "image_shape": list(result.images.shape[1:])}
    write_folder(Path(args.out), from_model(result.images), recorder.frames, settings)
    read = [name for name in token_names(result.tokens[0], EncoderConfig(**pipe.info.encoder))
            if name not in ("<start>", "<pad>")]
    print(f"the model read the prompt as: {' '.join(read)}")  # a word it never saw shows as several pieces
    print(f"wrote {args.n} images for {args.prompt!r}, grid.png, denoise.gif and meta.json to {args.out} "
          f"({result.seconds:.1f} s, {result.nfe} network evaluations)")
    return Path(args.out)


def sample_to_folder(args: argparse.Namespace) -> Path:
    """Load the model, sample, write the images, the grid, the GIF and meta.json; return the folder. A user's
    mistake is an exception (ValueError, FileNotFoundError, ...) that `python -m minidiff` shows as one line."""
    check_counts(args, "n", "steps")
    check_seed(args.seed)
    check_guidance_option(args.guidance)
    use_threads(args.threads)
    if args.prompt is not None:
        return prompt_to_folder(args)
    for option in ("negative_prompt", "init_image", "strength", "mask"):
        if getattr(args, option) is not None:
            raise ValueError(f"--{option.replace('_', '-')} goes with --prompt (a text-to-image model)")
    args.model = "mnist" if args.model is None else args.model
    device = resolve_device(args.device)
    model, info = load_model(args.model, device)
    if info.encoder is not None:  # conditioned through cross-attention on tokens: it draws from words
        example = "fox in noto style" if info.encoder["kind"] == "clip" else "a small red circle in the top left"
        raise ValueError(f"{args.model} is a text-to-image model: give it --prompt \"...\" (e.g. --prompt "
                         f"\"{example}\"); class labels (--label) are for the mnist models")
    flow = info.diffusion["prediction"] == FLOW
    args.sampler = args.sampler or ("flow_euler" if flow else "ddpm")
    labels = class_labels(args.n, args.label, info.network_config().num_classes)
    schedule = info.noise_schedule()
    steps = (50 if flow else schedule.T) if args.steps is None else args.steps
    options = flow_options(args) if flow else {"spacing": args.spacing, **sampler_options(args)}
    denoiser = make_denoiser(model, None if labels is None else labels.to(device), args.guidance, args.guidance_rescale)
    # the midpoint method reports each step's start and its midpoint, two visits of the loop per step
    recorder = GifRecorder(total_steps=2 * steps if args.sampler == "flow_midpoint" else steps)

    start = time.perf_counter()
    x0 = sample(args.sampler, denoiser, (args.n, *info.data["image_shape"]), schedule, info.diffusion["prediction"],
                steps=steps, clip_x0=args.clip_x0, generator=torch.Generator().manual_seed(args.seed), device=device,
                callback=recorder, **options)
    seconds = time.perf_counter() - start

    settings = {"model": str(checkpoint_stem(args.model)), "model_step": info.step,
                "labels": None if labels is None else labels.tolist(), "n": args.n, "seed": args.seed,
                "sampler": args.sampler, "steps": steps, "spacing": options.get("spacing"), "eta": options.get("eta"),
                "variance": options.get("variance"), "guidance": args.guidance,
                "guidance_rescale": args.guidance_rescale if args.guidance is not None else None,
                "clip_x0": args.clip_x0, "device": str(device), "nfe": recorder.nfe, "seconds": round(seconds, 3),
                "image_shape": info.data["image_shape"]}
    write_folder(Path(args.out), from_model(x0), recorder.frames, settings)
    print(f"wrote {args.n} images, grid.png, denoise.gif and meta.json to {args.out} "
          f"({seconds:.1f} s, {recorder.nfe} network evaluations)")
    return Path(args.out)


def parse_label(text: str) -> int | str:
    """--label: a class index, or "null" for the null class (unconditional samples)."""
    return "null" if text == "null" else int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the sample command's options on its sub-command parser."""
    parser.add_argument("--model", default=None,
                        help="a shipped checkpoint's name (in data/checkpoints/) or a path (run folder or STEM.json); "
                             "default: mnist, or shapes_text with --prompt")
    parser.add_argument("--prompt", default=None, help='text to draw, e.g. "a large red circle in the top left"')
    parser.add_argument("--negative-prompt", default=None,
                        help="text to steer away from (replaces the empty prompt in guidance), e.g. \"red\"")
    parser.add_argument("--init-image", default=None,
                        help="with --prompt: a 32x32 image to edit instead of starting from noise (SDEdit)")
    parser.add_argument("--strength", type=float, default=None,
                        help="with --init-image: share of the steps that run, 0 (the input) ... 1 (ignore it); "
                             "default 0.6, or 1 with --mask")
    parser.add_argument("--mask", default=None,
                        help="with --init-image: a 32x32 mask image, white = regenerate, black = keep (inpainting)")
    parser.add_argument("--label", type=parse_label, default=None,
                        help="class of every image, or 'null' (default: 0, 1, 2, ... in turn)")
    parser.add_argument("--n", type=int, default=16, help="how many images (default: 16)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise (default: 0)")
    parser.add_argument("--sampler", choices=sorted(SAMPLERS) + sorted(FLOW_SAMPLERS), default=None,
                        help="sampling algorithm (default: ddpm; dpm++ with --prompt; flow_euler for a rectified-flow "
                             "model, which takes only the flow_* samplers)")
    parser.add_argument("--steps", type=int, default=None,
                        help="sampling steps out of the T training steps (default: T; 20 with --prompt; 50 for a "
                             "rectified-flow model); heun, flow_heun and flow_midpoint spend 2 NFE per step")
    parser.add_argument("--spacing", choices=SPACINGS, default="linspace",
                        help="where the steps fall among the T (Lin et al. 2023, Table 2; default: linspace)")
    parser.add_argument("--variance", choices=VARIANCES, default="beta_tilde",
                        help="DDPM's step variance (default: beta_tilde)")
    parser.add_argument("--eta", type=float, default=None,
                        help="DDIM's fresh noise per step, 0 (deterministic) ... 1 (like DDPM) (default: 0)")
    parser.add_argument("--guidance", type=float, default=None,
                        help="classifier-free guidance scale w: 1 = conditional, 0 = unconditional, >1 stronger "
                             "(default: off, plain conditional sampling at half the cost; 3 with --prompt)")
    parser.add_argument("--guidance-rescale", type=float, default=0.0,
                        help="guidance rescale psi in 0 ... 1 (Lin et al. 2023; default: 0, off)")
    parser.add_argument("--clip-x0", action=argparse.BooleanOptionalAction, default=True,
                        help="clip the predicted x0 to [-1, 1] (default: on)")
    parser.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda or mps")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's choice; 1 is often faster on a busy 2-core CPU)")
    parser.add_argument("--out", default="outputs/sample", help="folder for the images (default: outputs/sample)")
    parser.set_defaults(run=sample_to_folder)
