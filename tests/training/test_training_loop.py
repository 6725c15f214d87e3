"""The diffusion training loop: it learns and writes a loadable model, resumes exactly, stops cleanly on NaN, and
refuses to overwrite a run or resume one with other settings."""

import pytest
import torch
from support.tiny import tiny_text_encoder, tiny_train_config

from minidiff.files.training_state import load_training_state
from minidiff.models import autoencoder_for, load_checkpoint, load_model
from minidiff.nets.conditioning import ConditionedUNet
from minidiff.nets.text import tokenize_batch
from minidiff.pipeline import sample_shapes
from minidiff.training import loop as train_module
from minidiff.training.loop import train
from minidiff.training.presets import PRESETS

# 4 batches per epoch: a break at step 13 falls mid-epoch
RESUMABLE = tiny_train_config(steps=20, checkpoint_every_steps=5)


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """An uninterrupted tiny run of 20 steps, and its folder."""
    out = tmp_path_factory.mktemp("whole") / "run"
    return train(RESUMABLE, out, device="cpu", progress=False), out


def test_training_lowers_the_loss_and_writes_a_loadable_model(whole):
    run, out = whole
    assert len(run.losses) == 20
    assert sum(run.losses[-5:]) < sum(run.losses[:5])
    weights, info = load_checkpoint(out)
    assert info.step == 20
    assert info.diffusion == {"schedule": "cosine", "T": 100, "zero_terminal_snr": False, "prediction": "eps",
                              "time_sampling": None}
    for name, value in run.ema.state_dict().items():
        assert torch.equal(weights[name], value)  # the checkpoint holds the EMA weights
    assert (out / "samples" / "step_000020.png").exists()


def test_an_interrupted_then_resumed_run_has_exactly_the_losses_of_an_uninterrupted_one(whole, tmp_path, monkeypatch):
    config, (whole, _) = RESUMABLE, whole

    real_step = train_module.train_step

    def killed_at_step_13(run, *args):
        if run.step == 13:
            raise KeyboardInterrupt  # as if the process were killed: nothing is saved after step 10
        return real_step(run, *args)

    monkeypatch.setattr(train_module, "train_step", killed_at_step_13)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "split", device="cpu", progress=False)
    assert load_training_state(tmp_path / "split" / "train_state").step == 10
    monkeypatch.setattr(train_module, "train_step", real_step)
    resumed = train(config, tmp_path / "split", resume=True, device="cpu", progress=False)

    assert resumed.losses == whole.losses  # exactly: same batches, t, noise, dropout and weights
    for a, b in [(whole.model, resumed.model), (whole.ema, resumed.ema)]:
        for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(x, y), name
    _, info = load_checkpoint(tmp_path / "split")
    assert info.command.count("\n") == 1  # both invocations are recorded


def test_a_nan_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "run"
    real_loss = train_module.diffusion_loss

    def nan_at_step_7(run, *args):
        loss = real_loss(run, *args)
        return loss * float("nan") if run.step == 7 else loss

    monkeypatch.setattr(train_module, "diffusion_loss", nan_at_step_7)
    with pytest.raises(FloatingPointError, match=r"loss is nan at step 7.*last good checkpoint .* is kept"):
        train(tiny_train_config(steps=20, checkpoint_every_steps=3), out, device="cpu", progress=False)
    state = load_training_state(out / "train_state")
    weights, info = load_checkpoint(out)
    assert state.step == 6 and info.step == 6 and len(state.loss_history) == 6
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_a_new_run_refuses_to_overwrite_and_a_resume_refuses_other_settings(tmp_path):
    out = tmp_path / "run"
    train(tiny_train_config(steps=2), out, device="cpu", progress=False)
    with pytest.raises(FileExistsError, match="pass --resume"):
        train(tiny_train_config(steps=2), out, device="cpu", progress=False)
    with pytest.raises(ValueError, match=r"other settings for \['lr'\]"):
        train(tiny_train_config(steps=4, lr=0.1), out, resume=True, device="cpu", progress=False)
    with pytest.raises(FileNotFoundError, match="no run to resume"):
        train(tiny_train_config(steps=4), tmp_path / "elsewhere", resume=True, device="cpu", progress=False)


# ------------------------------------------------------------------ token-conditioned models on latents


def test_the_training_loop_trains_a_token_conditioned_unet_on_latents(tiny_latent_run):
    folder, run = tiny_latent_run
    assert isinstance(run.model, ConditionedUNet) and run.step == 20
    assert all(torch.isfinite(torch.tensor(run.losses)))
    model, info = load_model(folder)
    assert isinstance(model, ConditionedUNet)
    assert info.data["name"] == "shapes_latents" and info.data["image_shape"] == [4, 8, 8]
    assert info.data["scale_factor"] > 0 and len(info.data["autoencoder_sha256"]) == 64
    assert info.encoder["kind"] == "attributes"


def test_the_same_loop_trains_a_text_conditioned_model(tiny_vae, tmp_path):
    config = PRESETS["tiny_latent"]()
    config.autoencoder = str(tiny_vae)
    config.encoder = tiny_text_encoder()
    config.steps = 5
    run = train(config, tmp_path, device="cpu", progress=False)
    model, info = load_model(tmp_path)
    assert info.encoder["kind"] == "text" and run.step == 5
    autoencoder, scale_factor = autoencoder_for(info)
    images = sample_shapes(model, info.noise_schedule(), info.diffusion["prediction"], autoencoder, scale_factor,
                           tokenize_batch(["a red circle", "a large blue square in the center"]), "ddim", steps=3,
                           guidance=3.0, generator=torch.Generator().manual_seed(0))
    assert images.shape == (2, 3, 32, 32) and torch.isfinite(images).all()
