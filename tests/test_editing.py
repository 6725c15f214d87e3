"""img2img (SDEdit) and inpainting: with every sampler, in the pipeline, and on the command line."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from minidiff.__main__ import main
from minidiff.data.pixels import to_model
from minidiff.data.shapes import render, shapes
from minidiff.diffusion.editing import Edit, latent_keep
from minidiff.diffusion.samplers import SAMPLERS
from minidiff.diffusion.schedule import make_schedule
from minidiff.files.images import read_image, read_mask
from minidiff.nets.autoencoder import decode_latents, encode_images
from minidiff.pipeline import TextToImage, token_denoiser

SCHEDULE = make_schedule("cosine", 100)
SHAPE = (2, 3, 8, 8)


def fake_denoiser(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A fixed, smooth "v prediction" that depends on x_t and t: enough to tell the code paths apart."""
    return 0.3 * torch.tanh(x_t) + 0.01 * t.float()[:, None, None, None] / 100


def run(sampler: str, edit: Edit | None, steps: int = 10, seed: int = 0):
    counted = []
    x = SAMPLERS[sampler](fake_denoiser, SHAPE, SCHEDULE, "v", steps=steps, generator=torch.Generator().manual_seed(seed),
                          edit=edit, callback=counted.append, clip_x0=False)
    return x, (counted[-1].nfe if counted else 0)


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_strength_0_returns_the_input_and_costs_nothing(sampler):
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5))
    x, nfe = run(sampler, Edit(x0, strength=0.0))
    assert torch.equal(x, x0) and nfe == 0


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_strength_1_is_plain_sampling_because_the_start_is_almost_pure_noise(sampler):
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5))
    edited, nfe = run(sampler, Edit(x0, strength=1.0))
    plain, plain_nfe = run(sampler, None)
    assert nfe == plain_nfe
    # x_T = sqrt(alpha_bar[T-1]) x0 + sqrt(1 - alpha_bar[T-1]) eps, with alpha_bar[T-1] ~ 1e-8 for cosine, T = 100
    assert torch.allclose(edited, plain, atol=1e-2)


@pytest.mark.parametrize("sampler", ["ddim", "dpm++", "euler"])
def test_strength_runs_that_share_of_the_steps(sampler):
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5))
    _, nfe = run(sampler, Edit(x0, strength=0.5), steps=10)
    assert nfe == 5


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_inpainting_keeps_the_kept_region_exactly(sampler):
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5))
    keep = torch.zeros(1, 1, 8, 8)
    keep[..., :, :4] = 1.0  # keep the left half
    x, _ = run(sampler, Edit(x0, strength=1.0, keep=keep, generator=torch.Generator().manual_seed(1)))
    assert torch.equal(x[..., :4], x0[..., :4])
    assert not torch.allclose(x[..., 4:], x0[..., 4:], atol=1e-2)


def test_bad_strengths_and_masks_are_refused():
    x0 = torch.zeros(SHAPE)
    with pytest.raises(ValueError, match=r"strength must lie in \[0, 1\]"):
        Edit(x0, strength=1.5)
    with pytest.raises(ValueError, match="the mask must be"):
        Edit(x0, keep=torch.ones(1, 1, 4, 4))


def test_latent_keep_pools_the_pixel_mask_by_area():
    regenerate = torch.zeros(1, 1, 32, 32)
    regenerate[..., :8, :6] = 1.0
    keep = latent_keep(regenerate, 4)
    assert keep.shape == (1, 1, 8, 8)
    assert keep[0, 0, 0, 0] == 0 and keep[0, 0, 0, 1] == 0.5 and keep[0, 0, 0, 2] == 1  # 4, 2 and 0 of 4 columns


def test_image_and_mask_files_are_checked(tmp_path):
    Image.new("RGB", (64, 64)).save(tmp_path / "big.png")
    Image.new("RGB", (32, 32), (255, 0, 0)).save(tmp_path / "red.png")
    Image.new("L", (16, 16), 255).save(tmp_path / "small_mask.png")
    Image.new("L", (32, 32), 255).save(tmp_path / "mask.png")
    with pytest.raises(ValueError, match="is 64x64; the model draws 32x32"):
        read_image(tmp_path / "big.png")
    with pytest.raises(ValueError, match="cannot read the image"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="must be 32x32 like the image"):
        read_mask(tmp_path / "small_mask.png")
    assert read_image(tmp_path / "red.png")[0, 0].tolist() == [255, 0, 0]
    assert read_mask(tmp_path / "mask.png").shape == (1, 1, 32, 32) and read_mask(tmp_path / "mask.png").min() == 1


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
    assert torch.equal(edit.keep[0, 0, :4], torch.ones(4, 8)) and torch.equal(edit.keep[0, 0, 4:], torch.zeros(4, 8))
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


def test_cli_img2img_and_inpainting(tiny_text_model, tmp_path):
    Image.fromarray(shapes(1, "train", seed=0)[0][0]).save(tmp_path / "in.png")
    Image.new("L", (32, 32), 255).save(tmp_path / "mask.png")
    main(["sample", "--model", str(tiny_text_model), "--prompt", "a blue circle", "--init-image",
          str(tmp_path / "in.png"), "--strength", "0.5", "--steps", "4", "--n", "2", "--out", str(tmp_path / "a")])
    meta = json.loads((tmp_path / "a" / "meta.json").read_text())
    assert meta["strength"] == 0.5 and meta["nfe"] == 2 and Image.open(tmp_path / "a" / "001.png").size == (32, 32)
    main(["sample", "--model", str(tiny_text_model), "--prompt", "a blue circle", "--init-image",
          str(tmp_path / "in.png"), "--mask", str(tmp_path / "mask.png"), "--steps", "4", "--out", str(tmp_path / "b")])
    assert json.loads((tmp_path / "b" / "meta.json").read_text())["strength"] == 1.0
    with pytest.raises(SystemExit, match="strength must lie in"):
        main(["sample", "--model", str(tiny_text_model), "--prompt", "a blue circle", "--init-image",
              str(tmp_path / "in.png"), "--strength", "2", "--out", str(tmp_path / "c")])
    with pytest.raises(SystemExit, match="give it with --init-image"):
        main(["sample", "--model", str(tiny_text_model), "--prompt", "a blue circle", "--strength", "0.5",
              "--out", str(tmp_path / "d")])
    with pytest.raises(SystemExit, match="goes with --prompt"):
        main(["sample", "--model", "mnist", "--init-image", str(tmp_path / "in.png"), "--out", str(tmp_path / "e")])


def test_shipped_inpainting_changes_nothing_far_from_the_mask():
    pipe = TextToImage.load()  # the shipped text model and autoencoder
    image = render({"shape": "circle", "s": 9, "cx": 10.0, "cy": 10.0, "rgb": (220, 30, 30)})
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
