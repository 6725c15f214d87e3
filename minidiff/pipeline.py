r"""Text to image, the whole system in one place: prompt -> tokens -> text encoder -> denoise a latent -> decode.

    pipe = TextToImage.load()                                   # the shipped model, its autoencoder, on the CPU
    result = pipe("a large red circle in the top left", n=4, seed=0)
    result.images                                              # (4, 3, 32, 32) in [-1, 1]

Every stage is a module of its own, and this file only connects them, in the order Stable Diffusion does (Rombach et al.
2022, fig. 3): the prompt is tokenized as the model's encoder reads it (`minidiff.nets.prompts.prompt_tokens`: words for
the Shapes text model, byte-pair pieces for a model on a frozen CLIP's text tower, the attributes the prompt names for a
model conditioned on Shapes attributes) and encoded once; a latent starts as noise and is denoised by the U-Net, guided
towards the prompt and away from the negative prompt (`token_denoiser`: classifier-free guidance, Ho & Salimans 2022,
`minidiff.diffusion.guidance`), with any sampler (`minidiff.diffusion.samplers.sample`); the autoencoder the model was
trained with (`minidiff.models.autoencoder_for`) decodes the clean latent (`minidiff.nets.autoencoder.decode_latents`).
`sample_shapes` is that path from tokens to images; training's sample grids use it too. On request the pipeline keeps
the whole trajectory (each step's latent and decoded prediction, `DecodedStep`) and each word's cross-attention map per
step (`minidiff.nets.attention_maps`). Given an input image it edits instead: img2img (SDEdit) with a strength, and
inpainting with a mask (`minidiff.diffusion.editing`).
"""

import contextlib
import time
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from minidiff.data.pixels import to_model
from minidiff.diffusion.arguments import flag, generator_or_none, whole_number
from minidiff.diffusion.editing import Edit, check_mask, latent_mask, paste_kept
from minidiff.diffusion.guidance import check_guidance, guided_denoiser
from minidiff.diffusion.loop import Denoiser, DenoisingStep, model_denoiser
from minidiff.diffusion.samplers import sample
from minidiff.diffusion.schedule import NoiseSchedule
from minidiff.files.device import resolve_device
from minidiff.models import CheckpointInfo, autoencoder_for, load_model
from minidiff.nets.attention_maps import CrossAttentionRecorder
from minidiff.nets.autoencoder import LATENT_SIZE, Autoencoder, decode_latents, encode_images
from minidiff.nets.conditioning import ConditionedUNet, EncoderConfig, empty_tokens
from minidiff.nets.prompts import prompt_tokens
from minidiff.nets.text import UNKNOWN_WORDS

DEFAULT_MODEL = "shapes_text"


def token_denoiser(model: ConditionedUNet, tokens: torch.Tensor, guidance: float | None = None,
                   rescale: float = 0.0, negative_tokens: torch.Tensor | None = None) -> Denoiser:
    """A denoiser(x_t, t) for any sampler: the tokens (B, L) encoded once, then the U-Net at every step.

    guidance None: plain conditional predictions. A number w: classifier-free guidance against the empty
    condition, which training dropped to (`minidiff.nets.conditioning.drop_tokens`), or against negative_tokens
    (1, L) or (B, L) when given: a negative prompt's prediction takes the unconditional one's place, so guidance
    pushes away from it.
    One batched forward pass of 2B per step.
    """
    context, context_mask = model.encode(tokens)
    if guidance is None:
        check_guidance(None, rescale)  # a rescale without guidance is refused
        if negative_tokens is not None:
            raise ValueError("a negative prompt acts through guidance: give a guidance scale as well (e.g. 3)")
        return model_denoiser(model.unet, context=context, context_mask=context_mask)
    if negative_tokens is None:
        negative_tokens = empty_tokens(tokens[:1])  # (1, L)
    null_context, null_mask = model.encode(negative_tokens)  # (1 or B, L, dim), (1 or B, L)
    return guided_denoiser(model.unet, guidance, context=context, context_mask=context_mask,
                           null_context=null_context, null_context_mask=null_mask, rescale=rescale)


@dataclass
class DecodedStep:
    """One sampler step in latent space; its predicted clean latent is decoded to an image only when first read."""

    latent: DenoisingStep  # x_t, eps, x0, x_prev: all latents (B, 4, 8, 8)
    autoencoder: Autoencoder = field(repr=False)
    scale_factor: float

    @cached_property
    def x0_image(self) -> torch.Tensor:  # (B, 3, 32, 32) in [-1, 1]: D(x0 / scale_factor); unread, never decoded
        return decode_latents(self.autoencoder, self.latent.x0, self.scale_factor)


@torch.inference_mode()
def sample_shapes(model: ConditionedUNet, schedule: NoiseSchedule, prediction: str, autoencoder: Autoencoder,
                  scale_factor: float, tokens: torch.Tensor, sampler: str = "dpm++", steps: int | None = 20,
                  guidance: float | None = None, generator: torch.Generator | None = None, callback=None,
                  device: torch.device | str = "cpu", negative_tokens: torch.Tensor | None = None,
                  rescale: float = 0.0, **sampler_options) -> torch.Tensor:
    """Draw one image per row of tokens (B, L): sample latents with any sampler, then decode -> (B, 3, 32, 32).

    guidance, negative_tokens, rescale: classifier-free guidance, as `token_denoiser` takes them.
    callback, if given, receives a `DecodedStep` at every step. x0 is not clipped: latents are not in [-1, 1].
    """
    negative_tokens = None if negative_tokens is None else negative_tokens.to(device)
    denoiser = token_denoiser(model, tokens.to(device), guidance, rescale, negative_tokens)

    def report(step: DenoisingStep) -> None:
        callback(DecodedStep(step, autoencoder, scale_factor))
    shape = (len(tokens), model.config.in_channels, LATENT_SIZE, LATENT_SIZE)  # (B, 4, 8, 8)
    z0 = sample(sampler, denoiser, shape, schedule, prediction, steps=steps, generator=generator, device=device,
                callback=report if callback else None, clip_x0=False, **sampler_options)
    return decode_latents(autoencoder, z0, scale_factor)


@dataclass
class Generation:
    """What one call of the pipeline produced."""

    prompts: list[str]  # one per image
    images: torch.Tensor  # (N, 3, 32, 32) in [-1, 1]
    tokens: torch.Tensor  # (N, L) the prompts' token ids
    nfe: int  # network evaluations per image
    seconds: float
    trajectory: list[DecodedStep] = field(default_factory=list)  # every step, when keep_trajectory
    attention: list[torch.Tensor] = field(default_factory=list)  # per step (N, L, 32, 32), when attention
    strength: float | None = None  # the strength the edit ran with (t_0 = strength * T), when editing an image
    start_timestep: float | None = None  # t_0, the timestep the edit started from; None when no step ran


def require_token_model(info: CheckpointInfo, name: str | Path = "this model") -> None:
    """A clear error for a model the pipeline cannot prompt: one conditioned on class labels (or on nothing)."""
    if info.encoder is None:
        classes = info.unet_config().num_classes is not None
        kind = "a class model" if classes else "an unconditional model"
        how = "from class labels (python -m minidiff sample --label N)" if classes else "without a condition"
        raise ValueError(f"{name} is {kind}, not a text model: it draws {how}, not from prompts; give a latent "
                         "model conditioned through cross-attention (e.g. shapes_text or shapes_latent)")


def prompts_to_draw(prompt: str | list[str], n: int | None) -> list[str]:
    """One prompt per image: n copies of one prompt (n default 1), or a list of prompts, one image each.

    Raises TypeError for anything but a string or a list of strings, ValueError for n < 1, an empty list, or an n
    that disagrees with the list's length. An empty prompt passes: whether it may be drawn is the encoder's call
    (`TextToImage.__call__` warns for a text model, the byte-pair tokenizer refuses it).
    """
    if isinstance(prompt, str):
        prompts = [prompt] * (1 if n is None else whole_number("n", n, 1, what="how many images of the prompt"))
    elif isinstance(prompt, (list, tuple)) and all(isinstance(p, str) for p in prompt):
        if not prompt:
            raise ValueError("prompt is an empty list: give at least one prompt")
        if n is not None and n != len(prompt):
            raise ValueError(f"n = {n!r} but prompt is a list of {len(prompt)}: a list draws one image per prompt; "
                             "leave out n, or give one prompt with n")
        prompts = list(prompt)
    else:
        raise TypeError(f"prompt must be a string or a list of strings, got {type(prompt).__name__}")
    return prompts


def pixel_mask(mask: torch.Tensor | np.ndarray) -> torch.Tensor:
    """An inpainting mask given as a torch tensor or a numpy array (1, 1, 32, 32), 1 = regenerate, as floats."""
    if isinstance(mask, np.ndarray):
        if not (np.issubdtype(mask.dtype, np.number) or mask.dtype == np.bool_):
            raise TypeError(f"mask must hold numbers in [0, 1], got a numpy array of {mask.dtype}")
        mask = torch.from_numpy(np.ascontiguousarray(mask))
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch tensor or numpy array (1, 1, 32, 32) in [0, 1], 1 = regenerate, got "
                        f"{type(mask).__name__}")
    return mask.float()


class TextToImage:
    """A token-conditioned latent diffusion model with its autoencoder, ready to draw from prompts.

    Any model conditioned through cross-attention works: a text model (encoder kind "text") reads the prompt's words
    through its transformer; a model on a frozen CLIP's text tower (kind "clip", the emoji model) reads its
    byte-pair pieces; a model conditioned on Shapes attributes (kind "attributes", chapter 09) reads the
    attributes the prompt names (`minidiff.data.shapes.caption_attributes`), the others left out.
    """

    def __init__(self, model: ConditionedUNet, info: CheckpointInfo, autoencoder: Autoencoder, scale_factor: float,
                 device: torch.device):
        require_token_model(info)
        self.model, self.info, self.device = model, info, device
        self.autoencoder, self.scale_factor = autoencoder, scale_factor
        self.schedule, self.prediction = info.noise_schedule(), info.diffusion["prediction"]

    @classmethod
    def load(cls, name: str | Path = DEFAULT_MODEL, device: torch.device | str = "cpu") -> "TextToImage":
        """The model by shipped name or path, and the autoencoder its checkpoint names (checked by sha256)."""
        device = resolve_device(device)
        model, info = load_model(name, device)
        require_token_model(info, name)
        autoencoder, scale_factor = autoencoder_for(info, device)
        return cls(model, info, autoencoder, scale_factor, device)

    def tokens(self, prompts: list[str], unknown: str = "error") -> torch.Tensor:
        """Prompts -> token ids (N, L) of the length the model was trained with: words for a text model, byte-pair
        pieces for a model on a CLIP's text tower, the attributes they name for an attribute model."""
        return prompt_tokens(prompts, EncoderConfig(**self.info.encoder), unknown)

    def edit(self, image: np.ndarray, strength: float, mask: torch.Tensor | np.ndarray | None, n: int, seed: int,
             jump_length: int = 10, resamplings: int = 0) -> Edit:
        """The `Edit` of an input image (its latent) and a pixel mask, 1 = regenerate, taken to the latent grid by its
        largest value per cell (`latent_mask`). jump_length, resamplings: RePaint's resampling (0 = none)."""
        image = np.asarray(image)
        if image.shape != (32, 32, 3) or image.dtype != np.uint8:
            raise ValueError(f"init_image must be uint8 (32, 32, 3), got {image.dtype} {image.shape}")
        pixels = to_model(image[None])  # (1, 32, 32, 3) uint8 -> (1, 3, 32, 32) in [-1, 1]
        cell_mask = None
        if mask is not None:
            mask = pixel_mask(mask)
            check_mask(mask, pixels)
            cell_mask = latent_mask(mask, self.autoencoder.config.downsampling)  # (1, 1, 8, 8)
        z0 = encode_images(self.autoencoder, pixels, self.scale_factor)  # (1, 3, 32, 32) -> (1, 4, 8, 8)
        generator = torch.Generator(self.device).manual_seed(seed + 1)  # the kept region's re-noising
        return Edit(z0.expand(n, -1, -1, -1).to(self.device), strength,
                    None if cell_mask is None else cell_mask.to(self.device), generator, jump_length, resamplings)

    @torch.inference_mode()
    def __call__(self, prompt: str | list[str], n: int | None = None, negative_prompt: str | None = None,
                 sampler: str = "dpm++", steps: int = 20, guidance: float | None = 3.0, rescale: float = 0.0,
                 seed: int = 0, generator: torch.Generator | None = None, unknown: str = "error",
                 keep_trajectory: bool = False, attention: bool = False, progress: bool = False,
                 callback: Callable[[DecodedStep], None] | None = None, init_image: np.ndarray | None = None,
                 strength: float | None = None, mask: torch.Tensor | np.ndarray | None = None, jump_length: int = 10,
                 resamplings: int = 0, **sampler_options) -> Generation:
        """Draw images for a prompt (n copies, default 1) or a list of prompts (one image each).

        negative_prompt: its prediction replaces the unconditional one in guidance (needs guidance).
        init_image: uint8 (32, 32, 3): edit it instead of starting from noise (`edit`); strength: where the edit
        starts, t_0 = strength * T, whatever the sampler (SDEdit; default 0.6, or 1 with a mask), with
        round_half_up(strength * steps) steps; mask (1, 1, 32, 32) in [0, 1], a torch tensor or a numpy array,
        1 = regenerate: keep the rest (inpainting; every pixel outside the mask is the input's own). jump_length,
        resamplings: RePaint's resampling for inpainting (`minidiff.diffusion.editing.repaint_path`; 0 = none).
        guidance: None (off) or the scale w; a negative w and an empty prompt are drawn, with a warning.
        Raises TypeError or ValueError, naming the argument, for anything else it cannot draw.
        generator: the noise's source; default torch.Generator seeded with `seed`, so a seed gives the same images.
        keep_trajectory / attention: also return every step (the trajectory) / every step's cross-attention map
        per token.
        """
        prompts = prompts_to_draw(prompt, n)
        steps = whole_number("steps", steps, 1, self.schedule.T, what="sampling steps out of the model's T")
        seed = whole_number("seed", seed, 0)
        generator_or_none("generator", generator)
        if negative_prompt is not None and not isinstance(negative_prompt, str):
            raise TypeError(f"negative_prompt must be a string or None, got {type(negative_prompt).__name__}")
        if unknown not in UNKNOWN_WORDS:
            raise ValueError(f"unknown must be one of {UNKNOWN_WORDS} (what to do with a word outside the "
                             f"vocabulary), got {unknown!r}")
        for name, value in (("keep_trajectory", keep_trajectory), ("attention", attention), ("progress", progress)):
            flag(name, value)
        for name in sorted(sampler_options.keys() & {"device", "clip_x0", "edit", "shape", "schedule", "prediction"}):
            raise TypeError(f"{name} is set by the pipeline itself (the device when loading: TextToImage.load(name, "
                            "device=...); an edit by init_image, strength and mask)")
        if init_image is None and (mask is not None or strength is not None):
            raise ValueError("a mask or a strength edits an image: give the image (init_image) too")
        if init_image is not None:
            strength = strength if strength is not None else (1.0 if mask is not None else 0.6)
            sampler_options["edit"] = self.edit(init_image, strength, mask, len(prompts), seed, jump_length,
                                                resamplings)
        tokens = self.tokens(prompts, unknown)  # a byte-pair model refuses an empty prompt here
        if any(not text.strip() for text in prompts):
            # stacklevel 3: past __call__ and torch's inference_mode wrapper, to the caller's line
            warnings.warn("an empty prompt names nothing: it draws unconditional images (the empty condition that "
                          "guidance trains against)", stacklevel=3)
        result = Generation(prompts, torch.empty(0), tokens, nfe=0, seconds=0.0, strength=strength)
        negative = None if negative_prompt is None else self.tokens([negative_prompt], unknown)
        generator = generator or torch.Generator(self.device).manual_seed(seed)
        bar = tqdm(total=steps, disable=not progress, unit="step", desc="denoising")
        recording = CrossAttentionRecorder(self.model) if attention else contextlib.nullcontext()
        with recording as recorder, bar:
            def on_step(step: DecodedStep) -> None:
                result.nfe = step.latent.nfe
                if step.latent.index == 0 and init_image is not None:
                    result.start_timestep = step.latent.t
                if keep_trajectory:
                    result.trajectory.append(step)
                if attention:
                    result.attention.append(recorder.maps[-1][: len(prompts)])  # the conditional half of the batch
                bar.update(1)
                if callback is not None:
                    callback(step)

            start = time.perf_counter()
            images = sample_shapes(self.model, self.schedule, self.prediction, self.autoencoder, self.scale_factor,
                                   tokens.to(self.device), sampler, steps, guidance, generator, on_step, self.device,
                                   negative_tokens=negative, rescale=rescale, **sampler_options)
            if mask is not None:
                images = paste_kept(images, to_model(np.asarray(init_image)[None]), pixel_mask(mask))  # kept: the input
            result.images, result.seconds = images.cpu(), time.perf_counter() - start
        return result


@torch.inference_mode()
def draw(pipe: TextToImage, captions: list[str], sampler: str = "dpm++", steps: int = 20, guidance: float = 3.0,
         seed: int = 0, batch_size: int = 100) -> torch.Tensor:
    """One image per caption (N, 3, 32, 32); batches seeded seed, seed + 1, ...: the same call, the same images.
    What the measuring tools draw with (`minidiff.measure.adherence`, `minidiff.measure.emoji_report`)."""
    images = []
    for index, start in enumerate(range(0, len(captions), batch_size)):
        generator = torch.Generator().manual_seed(seed + index)
        images.append(pipe(captions[start:start + batch_size], sampler=sampler, steps=steps, guidance=guidance,
                           generator=generator).images)
    return torch.cat(images)
