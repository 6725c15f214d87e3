"""Latent diffusion: latents cached once, the same training loop and samplers, decoding at every step."""

import pytest
import torch

from minidiff.data.shapes import shapes
from minidiff.diffusion.samplers import sample_ddim
from minidiff.models import autoencoder_for, load_model
from minidiff.nets.autoencoder import decode_latents, encode_images
from minidiff.nets.conditioning import ConditionedUNet, EncoderConfig, attribute_tokens, training_captions
from minidiff.nets.text import MAX_LENGTH, tokenize_batch
from minidiff.pipeline import sample_shapes, token_denoiser
from minidiff.training.data import encoded_shapes
from minidiff.training.loop import train
from minidiff.training.presets import AUTOENCODER_PRESETS, PRESETS
from minidiff.training.vae import train_vae

RED_CIRCLE = {"colour": "red", "shape": "circle", "size": "small", "position": "top left"}


@pytest.fixture(scope="module")
def tiny_latent_run(tiny_vae, tmp_path_factory):
    folder = tmp_path_factory.mktemp("latent")
    config = PRESETS["tiny_latent"]()
    config.autoencoder = str(tiny_vae)
    run = train(config, folder, device="cpu", progress=False)
    return folder, run


def test_latents_are_encoded_once_and_read_back_from_the_cache(tiny_vae, tmp_path):
    z0, tokens = encoded_shapes(str(tiny_vae), 32, seed=0, cache_dir=tmp_path)
    assert z0.shape == (32, 4, 8, 8) and tokens.shape == (32, 5)
    cached = list(tmp_path.glob("latents_*.safetensors"))
    assert len(cached) == 1
    again, again_tokens = encoded_shapes(str(tiny_vae), 32, seed=0, cache_dir=tmp_path)
    assert torch.equal(z0, again) and torch.equal(tokens, again_tokens)
    without_cache, _ = encoded_shapes(str(tiny_vae), 32, seed=0)
    assert torch.allclose(z0, without_cache)


def test_encoding_scales_and_decoding_unscales(tiny_vae):
    from minidiff.models import load_autoencoder
    autoencoder, info = load_autoencoder(tiny_vae)
    images = torch.rand(6, 3, 32, 32) * 2 - 1
    z0 = encode_images(autoencoder, images, info.scale_factor)
    with torch.no_grad():
        assert torch.allclose(z0, autoencoder.encode_mean(images) * info.scale_factor)
        assert torch.allclose(decode_latents(autoencoder, z0, info.scale_factor),
                              autoencoder.decode(z0 / info.scale_factor).clamp(-1, 1), atol=1e-6)


def test_the_training_loop_trains_a_token_conditioned_unet_on_latents(tiny_latent_run):
    folder, run = tiny_latent_run
    assert isinstance(run.model, ConditionedUNet) and run.step == 20
    assert all(torch.isfinite(torch.tensor(run.losses)))
    model, info = load_model(folder)
    assert isinstance(model, ConditionedUNet)
    assert info.data["name"] == "shapes_latents" and info.data["image_shape"] == [4, 8, 8]
    assert info.data["scale_factor"] > 0 and len(info.data["autoencoder_sha256"]) == 64
    assert info.encoder["kind"] == "attributes"


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
    steps = []
    sample_shapes(model, info.noise_schedule(), info.diffusion["prediction"], autoencoder, scale_factor,
                  attribute_tokens([RED_CIRCLE]), "dpm++", steps=4, callback=steps.append)
    assert len(steps) == 4
    for step in steps:
        assert step.latent.x_t.shape == step.latent.x0.shape == (1, 4, 8, 8)
        assert step.x0_image.shape == (1, 3, 32, 32)
        assert torch.allclose(step.x0_image, decode_latents(autoencoder, step.latent.x0, scale_factor))


def test_a_changed_autoencoder_is_refused(tiny_latent_run, tmp_path):
    folder, _ = tiny_latent_run
    _, info = load_model(folder)
    other = AUTOENCODER_PRESETS["tiny"]()
    other.seed = 1  # other weights under the name the model records
    train_vae(other, tmp_path, progress=False)
    info.data["autoencoder"] = str(tmp_path / "autoencoder")
    with pytest.raises(ValueError, match="not the one this model was trained with"):
        autoencoder_for(info)


def test_the_same_loop_trains_a_text_conditioned_model(tiny_vae, tmp_path):
    config = PRESETS["tiny_latent"]()
    config.autoencoder = str(tiny_vae)
    config.encoder = EncoderConfig(kind="text", dim=16, length=MAX_LENGTH, layers=1, heads=2)
    config.steps = 5
    run = train(config, tmp_path, device="cpu", progress=False)
    model, info = load_model(tmp_path)
    assert info.encoder["kind"] == "text" and run.step == 5
    autoencoder, scale_factor = autoencoder_for(info)
    images = sample_shapes(model, info.noise_schedule(), info.diffusion["prediction"], autoencoder, scale_factor,
                           tokenize_batch(["a red circle", "a large blue square in the center"]), "ddim", steps=3,
                           guidance=3.0, generator=torch.Generator().manual_seed(0))
    assert images.shape == (2, 3, 32, 32) and torch.isfinite(images).all()


def test_text_training_captions_mix_full_and_shortened_ones():
    _, captions, attributes = shapes(400, "train", seed=0)
    mixed = training_captions(attributes, seed=0)
    full = sum(m == c for m, c in zip(mixed, captions))
    assert 150 < full < 250  # about half full (a short caption can equal the full one by chance)
    assert all(a["shape"] in m for m, a in zip(mixed, attributes))  # the shape word is always there
    assert mixed == training_captions(attributes, seed=0)
