"""Training: the loss weights against their derivation, EMA, resuming exactly, and stopping cleanly on NaN."""

import json
import math
from dataclasses import replace

import pytest
import torch

from minidiff.__main__ import main
from minidiff.diffusion.forward import q_sample, training_target, x0_and_eps_from_output
from minidiff.diffusion.loss import loss_weights
from minidiff.diffusion.schedule import make_schedule
from minidiff.files.training_state import load_training_state
from minidiff.models import load_checkpoint
from minidiff.nets.unet import UNet
from minidiff.training import loop as train_module
from minidiff.training.config import TrainConfig
from minidiff.training.loop import train
from minidiff.training.presets import PRESETS, tiny_config
from minidiff.training.run import learning_rate, update_ema


def tiny(**changes) -> TrainConfig:
    return replace(tiny_config(), **changes)


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_min_snr_weights_turn_every_target_into_min_snr_gamma_times_the_x0_error(prediction):
    """Hang et al. 2023: the weighted loss of any target equals min(SNR, gamma) * |x0 - x0_hat|^2."""
    schedule, gamma = make_schedule("cosine", 1000), 5.0
    generator = torch.Generator().manual_seed(0)
    t = torch.tensor([0, 10, 200, 500, 800, 999])
    x0 = torch.rand((6, 1, 4, 4), generator=generator, dtype=torch.float64) * 2 - 1
    eps = torch.randn((6, 1, 4, 4), generator=generator, dtype=torch.float64)
    alpha_bar = schedule.alpha_bar[t]
    x_t = q_sample(schedule, x0, t, eps)
    output = torch.randn((6, 1, 4, 4), generator=generator, dtype=torch.float64)  # some imperfect network output
    x0_hat, _ = x0_and_eps_from_output(prediction, output, x_t, alpha_bar)
    target = training_target(prediction, x0, eps, alpha_bar)
    weighted = loss_weights(schedule.snr[t], gamma, prediction).double() * ((output - target) ** 2).mean(dim=(1, 2, 3))
    expected = schedule.snr[t].clamp(max=gamma) * ((x0_hat - x0) ** 2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(weighted, expected, rtol=1e-5, atol=1e-9)


def test_min_snr_weights_at_zero_snr_and_without_gamma():
    snr = torch.tensor([0.0, 1.0, 100.0], dtype=torch.float64)
    assert loss_weights(snr, 5.0, "eps").tolist() == [1.0, 1.0, 0.05000000074505806]  # 5 / 100 in float32
    assert loss_weights(snr, 5.0, "x0").tolist() == [0.0, 1.0, 5.0]
    assert loss_weights(snr, None, "eps").tolist() == [1.0, 1.0, 1.0]


def test_learning_rate_warms_up_linearly():
    config = tiny(lr=1e-3, warmup_steps=4)
    assert [learning_rate(config, s) for s in range(6)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])


def test_learning_rate_decays_as_a_half_cosine_to_a_tenth_after_the_warm_up():
    config = tiny(lr=1e-3, warmup_steps=4, decay_steps=10)
    for step in range(14):
        warm = min(1.0, (step + 1) / 4)
        wanted = 1e-3 * warm * (0.1 + 0.9 * (1 + math.cos(math.pi * min(step, 10) / 10)) / 2)  # the textbook form
        assert learning_rate(config, step) == pytest.approx(wanted, rel=1e-12)
    assert learning_rate(config, 10) == pytest.approx(1e-4) and learning_rate(config, 500) == pytest.approx(1e-4)


def test_every_model_saves_the_same_training_state_format(tmp_path, tiny_vae):
    train(tiny(steps=2), tmp_path / "diffusion", device="cpu", progress=False)
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


def test_presets_are_valid_and_mnist_is_class_conditional():
    assert set(PRESETS) >= {"mnist", "tiny"}
    mnist = PRESETS["mnist"]()
    assert mnist.unet.num_classes == 10 and mnist.data == "mnist5k" and 0 < mnist.class_drop_prob < 1
    assert TrainConfig.from_dict(json.loads(json.dumps(mnist.to_dict()))) == mnist


RESUMABLE = tiny(steps=20, checkpoint_every_steps=5)  # 4 batches per epoch: a break at step 13 falls mid-epoch


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
    assert info.diffusion == {"schedule": "cosine", "T": 100, "zero_terminal_snr": False, "prediction": "eps"}
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
        train(tiny(steps=20, checkpoint_every_steps=3), out, device="cpu", progress=False)
    state = load_training_state(out / "train_state")
    weights, info = load_checkpoint(out)
    assert state.step == 6 and info.step == 6 and len(state.loss_history) == 6
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_a_new_run_refuses_to_overwrite_and_a_resume_refuses_other_settings(tmp_path):
    out = tmp_path / "run"
    train(tiny(steps=2), out, device="cpu", progress=False)
    with pytest.raises(FileExistsError, match="pass --resume"):
        train(tiny(steps=2), out, device="cpu", progress=False)
    with pytest.raises(ValueError, match=r"other settings for \['lr'\]"):
        train(tiny(steps=4, lr=0.1), out, resume=True, device="cpu", progress=False)
    with pytest.raises(FileNotFoundError, match="no run to resume"):
        train(tiny(steps=4), tmp_path / "elsewhere", resume=True, device="cpu", progress=False)


def test_train_command_runs_and_resumes_from_the_command_line(tmp_path):
    out = str(tmp_path / "run")
    main(["train", "--config", "tiny", "--out", out, "--steps", "3", "--device", "cpu", "--quiet"])
    main(["train", "--out", out, "--steps", "5", "--resume", "--device", "cpu", "--quiet"])
    state = load_training_state(tmp_path / "run" / "train_state")
    assert state.step == 5 and len(state.loss_history) == 5
    assert state.command.splitlines() == [
        f"python -m minidiff train --out {out} --config tiny --seed 0 --steps 3 --device cpu",
        f"python -m minidiff train --out {out} --resume --steps 5 --device cpu"]
    with pytest.raises(SystemExit, match="already holds a run"):
        main(["train", "--config", "tiny", "--out", out, "--steps", "3", "--device", "cpu", "--quiet"])
