"""Saved networks: a model checkpoint round trips bit for bit into a working model, metrics are recorded beside
the weights, and a file of another kind is refused."""

from dataclasses import replace

import pytest
import torch
from support.checkpoints import CONFIG, assert_same_tensors, make_info, trained_model_and_optimizer

from minidiff.files.checkpoint import CheckpointError
from minidiff.files.training_state import TrainingState, capture_rng_states, save_training_state
from minidiff.models import load_checkpoint, load_model, record_metrics, save_checkpoint


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
