"""Checkpoint files: clear errors for missing, damaged or mixed files, and names and paths resolved to a stem. (Round
trips: tests/test_models.py and test_training_state.py; atomic writes: test_atomic.py.)"""

import os

import pytest
from support.checkpoints import make_info, trained_model_and_optimizer

from minidiff.files import checkpoint
from minidiff.files.checkpoint import CheckpointError, checkpoint_stem
from minidiff.models import load_checkpoint, save_checkpoint


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
