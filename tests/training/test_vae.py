"""The autoencoder's training: a tiny run resumes exactly, learns, and writes a checkpoint that loads; a decoder
fine-tuned alone keeps its source's encoder, latents and scale factor, and the latent models trained on them."""

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from minidiff.data.pixels import to_model
from minidiff.data.shapes import shapes
from minidiff.files.training_state import load_training_state
from minidiff.models import autoencoder_for, load_autoencoder
from minidiff.nets.autoencoder import Autoencoder, AutoencoderConfig, encode_images, vae_loss
from minidiff.training.presets import AUTOENCODER_PRESETS
from minidiff.training.vae import freeze_encoder_from, train_vae


def test_tiny_training_resumes_exactly_and_checkpoints_round_trip(tmp_path):
    whole = train_vae(AUTOENCODER_PRESETS["tiny"](), tmp_path / "whole", progress=False)
    half = AUTOENCODER_PRESETS["tiny"]()
    half.steps = 6
    train_vae(half, tmp_path / "split", progress=False)
    resumed = train_vae(AUTOENCODER_PRESETS["tiny"](), tmp_path / "split", resume=True, progress=False)
    losses = [load_training_state(tmp_path / name / "train_state").loss_history for name in ("whole", "split")]
    assert len(losses[0]) == 12 and losses[0] == losses[1]
    assert np.mean(losses[0][-3:]) < 0.8 * np.mean(losses[0][:3])  # it learns
    assert resumed.step == whole.step == 12
    model, info = load_autoencoder(tmp_path / "split")  # a run folder
    again, _ = load_autoencoder(tmp_path / "whole" / "autoencoder")
    for name, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[name]), name
    assert info.scale_factor > 0 and "psnr_heldout_db" in info.metrics and len(info.tensors_sha256) == 64


def fine_tune_decoder(source: Path, out: Path, **autoencoder_changes) -> None:
    """The tiny preset's 12 steps, training only a decoder behind `source`'s frozen encoder."""
    config = AUTOENCODER_PRESETS["tiny"]()
    config = replace(config, decoder_from=str(source), autoencoder=replace(config.autoencoder, **autoencoder_changes))
    train_vae(config, out, progress=False)


def test_a_decoder_fine_tuned_alone_keeps_the_encoder_its_latents_and_its_scale_factor(tiny_vae, tmp_path):
    fine_tune_decoder(tiny_vae, tmp_path / "wider", decoder_channels=(16, 16, 8))
    source, source_info = load_autoencoder(tiny_vae)
    tuned, tuned_info = load_autoencoder(tmp_path / "wider")
    for name, value in source.encoder.state_dict().items():
        assert torch.equal(value, tuned.encoder.state_dict()[name]), name
    assert tuned.decoder.conv_out.in_channels == 16 and tuned.config.decoder_channels == (16, 16, 8)
    assert tuned_info.scale_factor == source_info.scale_factor  # not estimated again: the latents are the source's
    assert tuned_info.encoder_of == source_info.tensors_sha256 == tuned_info.latent_space != tuned_info.tensors_sha256
    assert tuned_info.data["decoder_from"] == str(tiny_vae)
    images = to_model(shapes(8, "heldout", seed=1)[0])
    z0 = encode_images(source, images, source_info.scale_factor)
    assert torch.equal(encode_images(tuned, images, tuned_info.scale_factor), z0)
    losses = load_training_state(tmp_path / "wider" / "train_state").loss_history
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3])  # the new decoder learns


def test_a_decoder_of_the_same_widths_continues_from_the_sources_and_the_encoder_gets_no_gradient(tiny_vae):
    source, _ = load_autoencoder(tiny_vae)
    model = Autoencoder(source.config)
    freeze_encoder_from(model, str(tiny_vae))
    for name, value in source.state_dict().items():
        assert torch.equal(value, model.state_dict()[name]), name
    loss, _ = vae_loss(model, to_model(shapes(4, "train", seed=2)[0]))
    loss.backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.decoder.parameters())


def test_a_latent_model_decodes_through_a_fine_tuned_decoder_but_not_through_another_autoencoder(tiny_vae, tmp_path):
    fine_tune_decoder(tiny_vae, tmp_path / "tuned")
    _, source_info = load_autoencoder(tiny_vae)
    trained_with = {"autoencoder": str(tmp_path / "tuned"), "autoencoder_sha256": source_info.tensors_sha256,
                    "scale_factor": source_info.scale_factor}
    autoencoder, scale_factor = autoencoder_for(SimpleNamespace(data=trained_with))
    assert isinstance(autoencoder, Autoencoder) and scale_factor == source_info.scale_factor
    with pytest.raises(ValueError, match="not the one this model was trained with"):
        autoencoder_for(SimpleNamespace(data={**trained_with, "autoencoder_sha256": "0" * 64}))


def test_an_encoder_of_another_shape_cannot_lend_its_latent_space(tiny_vae):
    other = Autoencoder(AutoencoderConfig(channels=(16, 16, 16), groups=4))
    with pytest.raises(ValueError, match=r"decoder_from .*\['channels'\]"):
        freeze_encoder_from(other, str(tiny_vae))
