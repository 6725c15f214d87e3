"""Saved networks (minidiff.models): a model checkpoint round trips bit for bit into a working model, metrics are
recorded beside the weights, a file of another kind is refused; autoencoder checkpoints likewise, the shipped one
reconstructs held-out shapes, and a latent model refuses an autoencoder other than its own."""

import json
import runpy
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from support.checkpoints import CONFIG, assert_same_tensors, make_info, trained_model_and_optimizer
from support.tiny import TINY_AUTOENCODER

from minidiff.data.emoji import TONES, emoji
from minidiff.data.pixels import from_model, to_model
from minidiff.data.shapes import shapes
from minidiff.files.checkpoint import CheckpointError
from minidiff.files.training_state import TrainingState, capture_rng_states, save_training_state
from minidiff.measure.emoji_readers import fit_tone_reader, tone_accuracy
from minidiff.measure.emoji_report import round_trip
from minidiff.models import (
    AutoencoderInfo,
    autoencoder_for,
    load_autoencoder,
    load_checkpoint,
    load_model,
    record_metrics,
    save_autoencoder,
    save_checkpoint,
)
from minidiff.nets.autoencoder import Autoencoder, AutoencoderConfig, psnr
from minidiff.training.presets import AUTOENCODER_PRESETS
from minidiff.training.vae import train_vae

ROOT = Path(__file__).resolve().parents[1]


def test_model_checkpoint_round_trips_bit_for_bit(tmp_path):
    model, _ = trained_model_and_optimizer()
    save_checkpoint(tmp_path / "model", model.state_dict(), make_info())
    weights, info = load_checkpoint(tmp_path / "model")
    assert_same_tensors(weights, model.state_dict())
    assert info.unet_config() == CONFIG  # JSON turned the tuples into lists; the config turns them back
    assert replace(info, model={}) == replace(make_info(), model={})
    loaded, _ = load_model(tmp_path / "model.json")
    x, t, labels = torch.randn(2, 1, 8, 8), torch.tensor([0, 99]), torch.tensor([4, 10])
    with torch.no_grad():
        assert torch.equal(loaded(x, t, labels), model.eval()(x, t, labels))
    assert not loaded.training
    assert not list(tmp_path.glob(".*.tmp"))  # no temp files left behind


def test_metrics_are_recorded_without_touching_the_weights(tmp_path):
    model, _ = trained_model_and_optimizer(steps=1)
    save_checkpoint(tmp_path / "model", model.state_dict(), make_info())
    weights_before = (tmp_path / "model.safetensors").read_bytes()
    info = record_metrics(tmp_path / "model", {"class_accuracy": 0.91})
    assert info.metrics == {"fid": 12.5, "class_accuracy": 0.91}
    assert load_checkpoint(tmp_path / "model")[1].metrics == info.metrics
    assert (tmp_path / "model.safetensors").read_bytes() == weights_before


def test_a_training_state_is_not_a_model_checkpoint(tmp_path):
    model, optimizer = trained_model_and_optimizer(steps=1)
    rng_tensors, rng_rest = capture_rng_states()
    save_training_state(tmp_path / "train_state", TrainingState(
        step=1, model=model.state_dict(), ema=model.state_dict(), optimizer=optimizer.state_dict(),
        rng_tensors=rng_tensors, rng_rest=rng_rest, data_generator=torch.Generator().get_state(),
        data_order=torch.arange(4), loss_history=[1.0], training_minutes=0.0, config={}, command=""))
    with pytest.raises(CheckpointError, match="not a minidiff diffusion model checkpoint"):
        load_checkpoint(tmp_path / "train_state")


# ------------------------------------------------------------------ autoencoders


def test_a_diffusion_checkpoint_is_not_an_autoencoder():
    with pytest.raises(CheckpointError, match="not an autoencoder checkpoint"):
        load_autoencoder("mnist")


def small_checkpoint(stem, config=TINY_AUTOENCODER):
    torch.manual_seed(0)
    info = AutoencoderInfo(config=config.to_dict(), scale_factor=1.0, command="test", seed=0, device="cpu",
                           training_minutes=0.0, step=0, data={}, metrics={})
    save_autoencoder(stem, Autoencoder(config), info)
    return info


def test_save_and_load_round_trip(tmp_path):
    info = small_checkpoint(tmp_path / "vae")
    model, loaded = load_autoencoder(tmp_path / "vae.json")
    torch.manual_seed(0)
    original = Autoencoder(TINY_AUTOENCODER)
    assert all(torch.equal(value, model.state_dict()[name]) for name, value in original.state_dict().items())
    assert AutoencoderConfig.from_dict(loaded.config) == TINY_AUTOENCODER and loaded.command == info.command


def test_an_autoencoder_saved_with_beta_is_refused_until_the_script_converts_it(tmp_path):
    """Before the rename the KL weight was stored as "beta": loading such a checkpoint names the script, and the
    script renames the field in its place, leaving the weights and their sha256 alone."""
    small_checkpoint(tmp_path / "vae")
    json_path = tmp_path / "vae.json"
    meta = json.loads(json_path.read_text())
    meta["config"] = {("beta" if name == "kl_weight" else name): value for name, value in meta["config"].items()}
    json_path.write_text(json.dumps(meta, indent=2) + "\n")
    with pytest.raises(ValueError, match="'beta' field.*scripts/convert_checkpoints.py"):
        load_autoencoder(json_path)
    convert = runpy.run_path(str(ROOT / "scripts" / "convert_checkpoints.py"))["convert"]
    assert convert(json_path) and not convert(json_path)  # converted once, then nothing to do
    _, loaded = load_autoencoder(json_path)
    assert AutoencoderConfig.from_dict(loaded.config) == TINY_AUTOENCODER
    assert list(loaded.config) == list(TINY_AUTOENCODER.to_dict())  # kl_weight sits where beta was
    assert json.loads(json_path.read_text())["tensors_sha256"] == meta["tensors_sha256"]


def test_a_corrupt_or_mismatched_checkpoint_fails_clearly(tmp_path):
    small_checkpoint(tmp_path / "vae")
    data = bytearray((tmp_path / "vae.safetensors").read_bytes())
    data[-1] ^= 1
    (tmp_path / "vae.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match the sha256"):
        load_autoencoder(tmp_path / "vae")
    small_checkpoint(tmp_path / "wide", AutoencoderConfig(channels=(8, 16, 16), groups=4))
    small_checkpoint(tmp_path / "narrow")
    meta = json.loads((tmp_path / "narrow.json").read_text())
    (tmp_path / "wide.json").write_text(json.dumps({**meta, "tensors_sha256": json.loads(
        (tmp_path / "wide.json").read_text())["tensors_sha256"]}))  # narrow's config, wide's weights
    with pytest.raises(CheckpointError, match="does not fit the config"):
        load_autoencoder(tmp_path / "wide")


def test_the_shipped_vae_reconstructs_heldout_shapes_above_32_db():
    autoencoder, info = load_autoencoder("shapes_vae")
    images = to_model(shapes(64, "heldout", seed=123)[0])  # unseen colour/shape pairs, unseen seed
    with torch.no_grad():
        reconstruction = autoencoder.decode(autoencoder.encode_mean(images)).clamp(-1, 1)
    assert psnr(reconstruction, images).mean().item() >= 32.0
    assert from_model(reconstruction).shape == (64, 32, 32, 3)
    assert info.metrics["psnr_heldout_db"] >= 32.0


def test_a_changed_autoencoder_is_refused(tiny_latent_run, tmp_path):
    folder, _ = tiny_latent_run
    _, info = load_model(folder)
    other = AUTOENCODER_PRESETS["tiny"]()
    other.seed = 1  # other weights under the name the model records
    train_vae(other, tmp_path, progress=False)
    info.data["autoencoder"] = str(tmp_path / "autoencoder")
    with pytest.raises(ValueError, match="not the one this model was trained with"):
        autoencoder_for(info)


def test_the_shipped_emoji_vae_reconstructs_test_emoji_as_its_json_records():
    """Measured again on the 706 test emoji: the PSNR its JSON records (31.98 dB when shipped), and never below the
    course's 30 dB bar, so a worse autoencoder cannot slip in under the name. Its encoder is the first emoji
    autoencoder's, whose latents the text-to-emoji model was trained on (`encoder_of`)."""
    autoencoder, info = load_autoencoder("emoji_vae")
    images = to_model(emoji("test").images)  # (706, 3, 32, 32)
    with torch.no_grad():
        reconstruction = autoencoder.decode(autoencoder.encode_mean(images)).clamp(-1, 1)
    measured = psnr(reconstruction, images).mean().item()
    assert measured == pytest.approx(info.metrics["psnr_heldout_db"], abs=0.05)
    assert measured >= 30.0 and info.data["name"] == "emoji" and info.step == 28017
    model_info = json.loads((ROOT / "data" / "checkpoints" / "emoji.json").read_text())
    assert info.encoder_of != info.tensors_sha256
    assert model_info["data"]["autoencoder_sha256"] in (info.encoder_of, info.tensors_sha256)


def test_the_shipped_emoji_vae_costs_the_tone_reader_what_the_emoji_models_json_records():
    """The skin-tone reader on the real held-out tone pictures, and on the same pictures encoded and decoded by
    emoji_vae: every generated picture comes out of that decoder, so the second figure bounds what the text-to-emoji
    model can score. Measured again, it is the figure evaluate-emoji recorded, and below the real pictures' own."""
    every = emoji(split=None)
    part = every.subset((every.splits == "heldout_tone") & np.isin(every.tones, TONES))
    reader = fit_tone_reader(every.subset(every.splits == "train"))
    autoencoder, _ = load_autoencoder("emoji_vae")
    by_hand = from_model(autoencoder.decode(autoencoder.encode_mean(to_model(part.images))).clamp(-1, 1).detach())
    assert np.array_equal(round_trip(autoencoder, part.images), by_hand)
    through = tone_accuracy(reader, by_hand, part.tones)
    recorded = json.loads((ROOT / "data" / "checkpoints" / "emoji.json").read_text())["metrics"]
    tone = recorded["emoji_dpm++_20_steps_guidance_3.0"]["heldout_tone"]
    assert through == pytest.approx(tone["tone_real_through_autoencoder"], abs=1e-4)
    assert through < tone_accuracy(reader, part.images, part.tones) == pytest.approx(tone["tone_real"], abs=1e-4)
