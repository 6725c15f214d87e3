"""Checkpoints: bit-for-bit round trips, atomic writes, and clear errors for missing, damaged or mixed files."""

import json
import os
import random
from dataclasses import replace

import numpy as np
import pytest
import torch

from minidiff.files import checkpoint
from minidiff.files.atomic import atomic_write_bytes
from minidiff.files.checkpoint import CheckpointError, checkpoint_stem
from minidiff.files.training_state import (
    TrainingState,
    capture_rng_states,
    load_training_state,
    restore_rng_states,
    save_training_state,
)
from minidiff.models import CheckpointInfo, load_checkpoint, load_model, record_metrics, save_checkpoint
from minidiff.nets.unet import UNet, UNetConfig

CONFIG = UNetConfig(channels=(8, 16), blocks_per_level=1, attention_levels=(False, True), heads=2, groups=4,
                    num_classes=10)


def make_info(**changes) -> CheckpointInfo:
    info = CheckpointInfo(model=CONFIG.to_dict(), diffusion={"schedule": "cosine", "T": 100, "zero_terminal_snr": False,
                          "prediction": "eps"}, data={"name": "mnist5k", "image_shape": [1, 28, 28]},
                          command="python -m minidiff train --config tiny", seed=0, device="cpu", training_minutes=0.1,
                          step=7, metrics={"fid": 12.5})
    return replace(info, **changes)


def trained_model_and_optimizer(steps: int = 3):
    """A tiny U-Net after a few AdamW steps, so the optimizer state is not empty."""
    torch.manual_seed(0)
    model = UNet(CONFIG)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.01)
    for _ in range(steps):
        x = torch.randn(2, 1, 8, 8)
        loss = model(x, torch.tensor([3, 50]), torch.tensor([1, 10])).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model, optimizer


def assert_same_tensors(a: dict, b: dict):
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype and torch.equal(a[name], b[name]), name


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


def test_training_state_round_trips_bit_for_bit(tmp_path):
    model, optimizer = trained_model_and_optimizer()
    ema = UNet(CONFIG)
    rng_tensors, rng_rest = capture_rng_states()
    state = TrainingState(step=3, model=model.state_dict(), ema=ema.state_dict(), optimizer=optimizer.state_dict(),
                          rng_tensors=rng_tensors, rng_rest=rng_rest,
                          data_generator=torch.Generator().manual_seed(5).get_state(), data_order=torch.randperm(64),
                          loss_history=[0.9, 0.1 + 0.2, 1 / 3], training_minutes=0.25,
                          config={"any": "json"}, command="python -m minidiff train")
    save_training_state(tmp_path / "train_state", state)
    loaded = load_training_state(tmp_path / "train_state")

    assert_same_tensors(loaded.model, state.model)
    assert_same_tensors(loaded.ema, state.ema)
    assert_same_tensors(loaded.rng_tensors, state.rng_tensors)
    assert torch.equal(loaded.data_generator, state.data_generator) and torch.equal(loaded.data_order, state.data_order)
    assert loaded.loss_history == state.loss_history  # exact floats
    assert (loaded.step, loaded.training_minutes) == (3, 0.25)
    assert (loaded.config, loaded.command) == ({"any": "json"}, state.command)
    assert loaded.rng_rest == json.loads(json.dumps(state.rng_rest))
    # the optimizer: same hyper-parameters (tuples included) and the same moments, bit for bit
    expected = optimizer.state_dict()
    assert loaded.optimizer["param_groups"] == expected["param_groups"]
    assert loaded.optimizer["state"].keys() == expected["state"].keys()
    for index in expected["state"]:
        assert_same_tensors(loaded.optimizer["state"][index], expected["state"][index])
    fresh = torch.optim.AdamW(UNet(CONFIG).parameters())
    fresh.load_state_dict(loaded.optimizer)  # torch accepts it
    assert fresh.param_groups[0]["betas"] == (0.9, 0.99)


def test_rng_states_restore_every_generator():
    tensors, rest = capture_rng_states()
    first = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    restore_rng_states(tensors, rest)
    second = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1]) and first[2] == second[2]


@pytest.fixture
def saved(tmp_path):
    model, _ = trained_model_and_optimizer(steps=1)
    save_checkpoint(tmp_path / "model", model.state_dict(), make_info())
    return tmp_path / "model"


def test_truncated_weights_raise_a_clear_error(saved):
    path = saved.parent / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"model\.safetensors does not match the sha256.*retrain.*re-clone"):
        load_checkpoint(saved)


def test_corrupt_weights_raise_a_clear_error(saved):
    path = saved.parent / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # one flipped byte inside a weight
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="truncated, corrupt, or belongs to another checkpoint"):
        load_checkpoint(saved)


def test_truncated_json_raises_a_clear_error(saved):
    path = saved.parent / "model.json"
    path.write_text(path.read_text()[:50])
    with pytest.raises(CheckpointError, match=r"model\.json is not valid JSON"):
        load_checkpoint(saved)


def test_missing_file_raises_a_clear_error(saved):
    (saved.parent / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors is missing; retrain"):
        load_checkpoint(saved)


def test_json_of_one_checkpoint_with_weights_of_another_is_refused(tmp_path):
    model_a, _ = trained_model_and_optimizer(steps=1)
    model_b, _ = trained_model_and_optimizer(steps=2)
    save_checkpoint(tmp_path / "a", model_a.state_dict(), make_info())
    save_checkpoint(tmp_path / "b", model_b.state_dict(), make_info(step=8))
    os.replace(tmp_path / "b.safetensors", tmp_path / "a.safetensors")
    with pytest.raises(CheckpointError, match="belongs to another checkpoint"):
        load_checkpoint(tmp_path / "a")


def test_a_failed_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "file.json"
    atomic_write_bytes(path, b"old")

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(path, b"new and longer")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.json"]  # the temp file is gone


def test_a_training_state_is_not_a_model_checkpoint(tmp_path):
    model, optimizer = trained_model_and_optimizer(steps=1)
    rng_tensors, rng_rest = capture_rng_states()
    save_training_state(tmp_path / "train_state", TrainingState(
        step=1, model=model.state_dict(), ema=model.state_dict(), optimizer=optimizer.state_dict(),
        rng_tensors=rng_tensors, rng_rest=rng_rest, data_generator=torch.Generator().get_state(),
        data_order=torch.arange(4), loss_history=[1.0], training_minutes=0.0, config={}, command=""))
    with pytest.raises(CheckpointError, match="not a minidiff diffusion model checkpoint"):
        load_checkpoint(tmp_path / "train_state")


def test_names_and_paths_resolve_to_a_checkpoint_stem(saved, tmp_path, monkeypatch):
    assert checkpoint_stem(tmp_path) == saved  # a run folder -> its model
    assert checkpoint_stem(saved.parent / "model.json") == saved
    assert checkpoint_stem(saved.parent / "model.safetensors") == saved
    assert checkpoint_stem(saved) == saved
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    model, _ = trained_model_and_optimizer(steps=1)
    save_checkpoint(shipped / "digits", model.state_dict(), make_info())
    (shipped / "classifier.json").write_text('{"config": {}}')  # some other kind of JSON: not listed
    monkeypatch.setattr(checkpoint, "CHECKPOINT_DIR", shipped)
    monkeypatch.chdir(tmp_path)
    assert checkpoint_stem("digits") == shipped / "digits"
    with pytest.raises(FileNotFoundError, match=r"no checkpoint named 'mnsit': give a shipped name \(digits\)"):
        checkpoint_stem("mnsit")
