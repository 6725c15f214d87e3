"""The text-to-image pipeline: seeds, guidance, negative prompts, recorded trajectories and attention maps, attribute and
class models, guidance through tokens, img2img and inpainting. (The command line: tests/cli/test_cli_sample.py.)"""

import itertools

import numpy as np
import pytest
import torch
from support.tiny import PROMPT, RED_CIRCLE, tiny_conditioned_unet

from minidiff.data.pixels import to_model
from minidiff.data.shapes import caption_attributes, render, shapes
from minidiff.diffusion.samplers import SAMPLERS, sample_ddim
from minidiff.models import autoencoder_for, load_model
from minidiff.nets.autoencoder import decode_latents, encode_images
from minidiff.nets.conditioning import attribute_tokens, empty_tokens
from minidiff.nets.text import MAX_LENGTH
from minidiff.pipeline import TextToImage, sample_shapes, token_denoiser
from minidiff.training.loop import train
from minidiff.training.presets import PRESETS


def test_a_seed_gives_the_same_images_twice_and_another_seed_others(tiny_text_model):
    pipe = TextToImage.load(tiny_text_model)
    first = pipe(PROMPT, n=2, steps=4, seed=0)
    again = pipe(PROMPT, n=2, steps=4, seed=0)
    other = pipe(PROMPT, n=2, steps=4, seed=1)
    assert first.images.shape == (2, 3, 32, 32) and first.prompts == [PROMPT, PROMPT]
    assert torch.equal(first.images, again.images)
    assert not torch.allclose(first.images, other.images)
    assert first.nfe == 4


def test_guidance_1_draws_the_conditional_images(tiny_text_model):
    pipe = TextToImage.load(tiny_text_model)
    guided = pipe(["a red circle", "a blue square"], steps=3, guidance=1.0, sampler="ddim")
    plain = pipe(["a red circle", "a blue square"], steps=3, guidance=None, sampler="ddim")
    assert torch.allclose(guided.images, plain.images, atol=1e-4)


def test_a_negative_prompt_changes_the_images_and_needs_guidance(tiny_text_model):
    pipe = TextToImage.load(tiny_text_model)
    plain = pipe(PROMPT, steps=3, guidance=3.0, sampler="ddim")
    negative = pipe(PROMPT, steps=3, guidance=3.0, sampler="ddim", negative_prompt="a blue square")
    assert not torch.allclose(plain.images, negative.images)
    with pytest.raises(ValueError, match="negative prompt acts through guidance"):
        pipe(PROMPT, steps=3, guidance=None, negative_prompt="blue")


def test_unknown_words_are_refused_by_name(tiny_text_model):
    with pytest.raises(ValueError, match="'pink'"):
        TextToImage.load(tiny_text_model)("a pink circle", steps=2)


def test_trajectory_and_attention_maps_are_recorded_per_step(tiny_text_model):
    pipe = TextToImage.load(tiny_text_model)
    result = pipe(["a red circle", PROMPT], steps=3, keep_trajectory=True, attention=True)
    assert len(result.trajectory) == len(result.attention) == 3
    maps = result.attention[-1]
    assert maps.shape == (2, MAX_LENGTH, 32, 32)
    real = result.tokens != 0  # (2, L)
    assert torch.allclose(maps.sum(dim=1), torch.ones(2, 32, 32), atol=1e-4)  # each pixel's weights sum to 1
    assert maps[~real].abs().max() == 0  # padding is never looked at
    assert result.trajectory[0].x0_image.shape == (2, 3, 32, 32)


def test_an_attribute_model_reads_the_attributes_a_prompt_names(tiny_vae, tmp_path):
    config = PRESETS["tiny_latent"]()
    config.autoencoder, config.steps = str(tiny_vae), 1
    train(config, tmp_path / "attributes", device="cpu", progress=False)
    pipe = TextToImage.load(tmp_path / "attributes")
    prompts = ["a small red circle in the top left", "a blue square"]
    wanted = attribute_tokens([caption_attributes(p) for p in prompts])
    assert torch.equal(pipe.tokens(prompts), wanted)
    assert wanted[1].tolist()[3:] == [0, 0]  # size and position left out: padding, as training drops them
    by_prompt = pipe(prompts, steps=3, seed=0).images
    by_tokens = sample_shapes(pipe.model, pipe.schedule, pipe.prediction, pipe.autoencoder, pipe.scale_factor, wanted,
                              "dpm++", 3, guidance=3.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(by_prompt, by_tokens)
    with pytest.raises(ValueError, match="'balloon' names no attribute"):
        pipe("a red balloon")


def test_a_class_model_is_refused_with_what_to_do_instead():
    with pytest.raises(ValueError, match="mnist is a class model, not a text model.*--label"):
        TextToImage.load("mnist")


def test_token_guidance_with_w_1_is_conditional_and_w_0_is_the_empty_condition():
    model = tiny_conditioned_unet(attention_levels=(True, True), dropout=0.0)
    x_t, t = torch.randn(3, 4, 8, 8), torch.tensor([5, 400, 999])
    tokens = attribute_tokens([RED_CIRCLE, {**RED_CIRCLE, "colour": "blue"}, {**RED_CIRCLE, "shape": "square"}])
    with torch.no_grad():
        conditional = model(x_t, t, tokens)
        unconditional = model(x_t, t, empty_tokens(tokens))
        assert torch.allclose(token_denoiser(model, tokens)(x_t, t), conditional, atol=1e-5)
        assert torch.allclose(token_denoiser(model, tokens, guidance=1.0)(x_t, t), conditional, atol=1e-5)
        assert torch.allclose(token_denoiser(model, tokens, guidance=0.0)(x_t, t), unconditional, atol=1e-5)
        guided = token_denoiser(model, tokens, guidance=3.0)(x_t, t)
    assert torch.allclose(guided, unconditional + 3.0 * (conditional - unconditional), atol=1e-4)


# ------------------------------------------------------------------ img2img and inpainting


def test_pipeline_strength_0_gives_the_inputs_reconstruction(tiny_text_model):
    pipe = TextToImage.load(tiny_text_model)
    image = shapes(1, "train", seed=0)[0][0]
    result = pipe("a blue circle", init_image=image, strength=0.0)
    z0 = encode_images(pipe.autoencoder, to_model(image[None]), pipe.scale_factor)
    assert torch.allclose(result.images, decode_latents(pipe.autoencoder, z0, pipe.scale_factor), atol=1e-6)
    assert result.nfe == 0


def test_pipeline_inpainting_keeps_the_latent_outside_the_mask(tiny_text_model):
    pipe = TextToImage.load(tiny_text_model)
    image = shapes(1, "train", seed=0)[0][0]
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 16:, :] = 1.0  # regenerate the bottom half
    edit = pipe.edit(image, 1.0, mask, n=2, seed=0)
    z0 = encode_images(pipe.autoencoder, to_model(image[None]), pipe.scale_factor)
    assert torch.equal(edit.mask[0, 0, :4], torch.zeros(4, 8)) and torch.equal(edit.mask[0, 0, 4:], torch.ones(4, 8))
    z = SAMPLERS["dpm++"](token_denoiser(pipe.model, pipe.tokens(["a green square"] * 2), 3.0), (2, 4, 8, 8),
                          pipe.schedule, pipe.prediction, steps=4, clip_x0=False, edit=edit,
                          generator=torch.Generator().manual_seed(0))
    assert torch.equal(z[:, :, :4], z0[:, :, :4].expand(2, -1, -1, -1))
    result = pipe("a green square", n=2, init_image=image, mask=mask, steps=4)
    assert result.images.shape == (2, 3, 32, 32) and result.nfe == 4
    with pytest.raises(ValueError, match="give the image"):
        pipe("a green square", mask=mask)
    with pytest.raises(ValueError, match="init_image must be uint8"):
        pipe("a green square", init_image=np.zeros((28, 28, 3), np.uint8))


def test_pipeline_edits_are_reproducible_from_the_seed_alone(tiny_text_model):
    """img2img, inpainting and RePaint's resampling: the same seed, the same images, whatever draws from torch's
    global RNG in between."""
    pipe = TextToImage.load(tiny_text_model)
    image = shapes(1, "train", seed=0)[0][0]
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 5:11, 18:27] = 1.0
    for options in ({"strength": 0.5}, {"mask": mask}, {"mask": mask, "resamplings": 1, "jump_length": 2}):
        results = []
        for global_seed in (0, 1):
            torch.manual_seed(global_seed)
            torch.rand(3)
            results.append(pipe("a green square", n=2, init_image=image, steps=4, seed=3, **options).images)
        assert torch.equal(*results), options


def test_shipped_inpainting_changes_nothing_far_from_the_mask():
    pipe = TextToImage.load()  # the shipped text model and autoencoder
    image = render({"shape": "circle", "side": 9, "cx": 10.0, "cy": 10.0, "rgb": (220, 30, 30)})
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 16:, 16:] = 1.0  # regenerate the bottom-right quarter
    result = pipe("a small blue square in the bottom right", n=2, init_image=image, mask=mask, seed=0)
    z0 = encode_images(pipe.autoencoder, to_model(image[None]), pipe.scale_factor)
    reconstruction = decode_latents(pipe.autoencoder, z0, pipe.scale_factor)
    outside = torch.ones(32, 32, dtype=torch.bool)
    outside[12:, 12:] = False  # the mask and a 4-pixel margin, which the decoder blends
    difference = (result.images - reconstruction)[..., outside]
    assert 10 * torch.log10(4 / difference.pow(2).mean()) > 35  # dB: as close as the autoencoder's own error
    inside = (result.images - reconstruction)[..., 18:30, 18:30]
    assert inside.abs().max() > 0.5  # something new was drawn in the mask


def small_mask(rows: slice, columns: slice) -> torch.Tensor:
    """A (1, 1, 32, 32) pixel mask, 1 = regenerate in rows x columns."""
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., rows, columns] = 1.0
    return mask


def test_shipped_inpainting_honours_every_white_pixel_and_keeps_every_other_one():
    """Masks smaller than a latent cell (4 x 4 pixels), or off its grid, regenerate what they cover as much as an
    on-grid mask does (an averaging latent mask kept an off-grid 4 x 4 mask's cells at 75% of the input: its pixels
    changed by 0.004 on average against 0.07 on the grid); every pixel outside the mask is the input's own."""
    pipe = TextToImage.load()  # the shipped text model and autoencoder
    image = render({"shape": "circle", "side": 16, "cx": 16.0, "cy": 16.0, "rgb": (220, 30, 30)})
    x = to_model(image[None])

    def edit(mask: torch.Tensor) -> torch.Tensor:
        return pipe("a large green square in the center", n=4, init_image=image, mask=mask, steps=6, seed=0).images

    def change_inside(mask: torch.Tensor, images: torch.Tensor) -> float:
        return (images - x).abs()[..., mask[0, 0].bool()].mean().item()

    on_grid = small_mask(slice(12, 16), slice(12, 16))  # exactly one latent cell
    reference = change_inside(on_grid, edit(on_grid))
    assert reference > 0.05
    for name, mask in {"1 x 1": small_mask(slice(14, 15), slice(17, 18)),
                       "4 x 4 off the grid": small_mask(slice(14, 18), slice(10, 14)),
                       "a 1-pixel line": small_mask(slice(4, 28), slice(17, 18))}.items():
        images = edit(mask)
        assert change_inside(mask, images) > 0.5 * reference, name
        assert torch.equal(images[..., ~mask[0, 0].bool()], x.expand(4, -1, -1, -1)[..., ~mask[0, 0].bool()]), name
    assert torch.equal(edit(torch.zeros(1, 1, 32, 32)), x.expand(4, -1, -1, -1))  # an empty mask keeps all
    full = edit(torch.ones(1, 1, 32, 32))  # a full mask regenerates all: img2img at strength 1
    plain = pipe("a large green square in the center", n=4, init_image=image, strength=1.0, steps=6, seed=0).images
    assert torch.equal(full, plain)


def test_shipped_img2img_changes_the_input_more_as_the_strength_grows_for_every_sampler():
    """Strength is a noise level (SDEdit): with a prompt that describes the input, what changes is what the noise
    erased, and it grows with the strength for every sampler (Euler once changed the input at strength 0.3 as much
    as at 1, because strength picked a share of its Karras steps, which crowd at high noise)."""
    pipe = TextToImage.load()
    image = render({"shape": "circle", "side": 12, "cx": 16.0, "cy": 16.0, "rgb": (220, 30, 30)})
    x = to_model(image[None])
    for sampler in sorted(SAMPLERS):
        mse = [(pipe("a large red circle in the center", n=2, init_image=image, strength=strength, steps=8,
                     sampler=sampler, seed=0).images - x).pow(2).mean().item() for strength in (0.1, 0.3, 0.5, 0.7, 0.9)]
        assert all(a < b for a, b in itertools.pairwise(mse)), (sampler, mse)
        assert mse[1] < mse[-1] / 4, (sampler, mse)


# ------------------------------------------------------------------ sampling latents, decoding each step


def test_latent_sampling_is_the_pixel_samplers_code_path_plus_a_decode(tiny_latent_run):
    folder, _ = tiny_latent_run
    model, info = load_model(folder)
    autoencoder, scale_factor = autoencoder_for(info)
    tokens = attribute_tokens([RED_CIRCLE, {**RED_CIRCLE, "colour": "blue"}])
    schedule, prediction = info.noise_schedule(), info.diffusion["prediction"]
    images = sample_shapes(model, schedule, prediction, autoencoder, scale_factor, tokens, "ddim", steps=5,
                           guidance=2.0, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        z0 = sample_ddim(token_denoiser(model, tokens, 2.0), (2, 4, 8, 8), schedule, prediction, steps=5,
                         clip_x0=False, generator=torch.Generator().manual_seed(0))
        by_hand = decode_latents(autoencoder, z0, scale_factor)
    assert images.shape == (2, 3, 32, 32)
    assert torch.equal(images, by_hand)


def test_each_step_reports_the_latent_and_the_decoded_prediction(tiny_latent_run):
    folder, _ = tiny_latent_run
    model, info = load_model(folder)
    autoencoder, scale_factor = autoencoder_for(info)
    trajectory = []
    sample_shapes(model, info.noise_schedule(), info.diffusion["prediction"], autoencoder, scale_factor,
                  attribute_tokens([RED_CIRCLE]), "dpm++", steps=4, callback=trajectory.append)
    assert len(trajectory) == 4
    for step in trajectory:
        assert step.latent.x_t.shape == step.latent.x0.shape == (1, 4, 8, 8)
        assert step.x0_image.shape == (1, 3, 32, 32)
        assert torch.allclose(step.x0_image, decode_latents(autoencoder, step.latent.x0, scale_factor))
