"""The run every training loop shares: the learning-rate schedule, EMA, and one training-state format."""

import math

import pytest
import torch
from support.tiny import tiny_train_config

from minidiff.files.training_state import load_training_state
from minidiff.models import load_model
from minidiff.nets.unet import UNet
from minidiff.training.loop import train
from minidiff.training.presets import tiny_config
from minidiff.training.run import learning_rate, update_ema


def test_learning_rate_warms_up_linearly():
    config = tiny_train_config(lr=1e-3, warmup_steps=4)
    assert [learning_rate(config, step) for step in range(6)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])


def test_learning_rate_decays_as_a_half_cosine_to_a_tenth_after_the_warm_up():
    config = tiny_train_config(lr=1e-3, warmup_steps=4, decay_steps=10)
    for step in range(14):
        warm = min(1.0, (step + 1) / 4)
        wanted = 1e-3 * warm * (0.1 + 0.9 * (1 + math.cos(math.pi * min(step, 10) / 10)) / 2)  # the textbook form
        assert learning_rate(config, step) == pytest.approx(wanted, rel=1e-12)
    assert learning_rate(config, 10) == pytest.approx(1e-4) and learning_rate(config, 500) == pytest.approx(1e-4)


def test_every_model_saves_the_same_training_state_format(tmp_path, tiny_vae):
    train(tiny_train_config(steps=2), tmp_path / "diffusion", device="cpu", progress=False)
    diffusion = load_training_state(tmp_path / "diffusion" / "train_state")
    autoencoder = load_training_state(tiny_vae.parent / "train_state")  # the session's tiny autoencoder run
    assert diffusion.step == 2 and len(diffusion.loss_history) == 2 and diffusion.ema  # diffusion keeps an EMA
    assert autoencoder.step == 12 and len(autoencoder.loss_history) == 12 and autoencoder.ema == {}  # none here


def test_ema_update_is_the_weighted_average():
    torch.manual_seed(0)
    model, ema = UNet(tiny_config().unet), UNet(tiny_config().unet)
    before = [p.clone() for p in ema.parameters()]
    update_ema(ema, model, decay=0.9)
    for old, new, target in zip(before, ema.parameters(), model.parameters()):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * target)


def test_a_run_keeps_its_ema_model_at_the_steps_asked_for_a_learning_curve(tmp_path):
    run = train(tiny_train_config(steps=4, keep_models_at_steps=[2, 3]), tmp_path, device="cpu", progress=False)
    kept = sorted(path.name for path in (tmp_path / "models").glob("*.json"))
    assert kept == ["step_000002.json", "step_000003.json"]
    model, info = load_model(tmp_path / "models" / "step_000003")
    assert info.step == 3 and load_model(tmp_path / "model")[1].step == 4
    final = dict(run.ema.state_dict())
    assert any(not torch.equal(value, final[name]) for name, value in model.state_dict().items())  # an earlier EMA
    assert load_training_state(tmp_path / "train_state").config["keep_models_at_steps"] == [2, 3]


@pytest.mark.parametrize("steps, error", [((3, 2), ValueError), ((0,), ValueError), (5, TypeError), ((2.5,), TypeError)])
def test_kept_steps_must_be_increasing_whole_numbers(steps, error):
    with pytest.raises(error, match="keep_models_at_steps"):
        tiny_train_config(keep_models_at_steps=steps)
