"""A rectified-flow model trains in the same loop as every other model: it learns, checkpoints, resumes exactly, and
its checkpoint samples with the flow samplers; the settings it does not use are refused."""

import pytest
import torch

from minidiff.diffusion.loop import model_denoiser
from minidiff.diffusion.samplers import sample
from minidiff.files.training_state import load_training_state
from minidiff.models import load_model
from minidiff.training import loop as train_module
from minidiff.training.loop import train
from minidiff.training.presets import PRESETS


def flow_config(**overrides):
    config = PRESETS["tiny_flow"]()
    for name, value in {"steps": 20, "checkpoint_every_steps": 5, **overrides}.items():
        setattr(config, name, value)
    return config


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    out = tmp_path_factory.mktemp("flow") / "run"
    return train(flow_config(), out, device="cpu", progress=False), out


def test_a_flow_run_lowers_its_loss_and_writes_a_model_the_flow_samplers_draw_from(whole):
    run, out = whole
    assert len(run.losses) == 20 and sum(run.losses[-5:]) < sum(run.losses[:5])
    model, info = load_model(out)
    assert info.diffusion["prediction"] == "flow" and info.diffusion["time_sampling"] == "logit_normal"
    assert (out / "samples" / "step_000020.png").exists()
    labels = torch.arange(4)
    x = sample("flow_heun", model_denoiser(model, class_labels=labels), (4, 1, 28, 28), info.noise_schedule(),
               info.diffusion["prediction"], steps=3, generator=torch.Generator().manual_seed(0))
    assert x.shape == (4, 1, 28, 28) and bool(torch.isfinite(x).all())
    with pytest.raises(ValueError, match="flow_euler"):
        sample("ddpm", model_denoiser(model), (1, 1, 28, 28), None, "flow", steps=3)


def test_an_interrupted_flow_run_resumes_with_exactly_the_losses_of_an_uninterrupted_one(whole, tmp_path,
                                                                                          monkeypatch):
    whole_run, _ = whole
    real_step = train_module.train_step

    def killed_at_step_13(run, *args):
        if run.step == 13:
            raise KeyboardInterrupt
        return real_step(run, *args)

    monkeypatch.setattr(train_module, "train_step", killed_at_step_13)
    with pytest.raises(KeyboardInterrupt):
        train(flow_config(), tmp_path / "split", device="cpu", progress=False)
    assert load_training_state(tmp_path / "split" / "train_state").step == 10
    monkeypatch.setattr(train_module, "train_step", real_step)
    resumed = train(flow_config(), tmp_path / "split", resume=True, device="cpu", progress=False)
    assert resumed.losses == whole_run.losses


def test_settings_a_flow_run_does_not_use_are_refused(tmp_path):
    with pytest.raises(ValueError, match="min_snr_gamma"):
        train(flow_config(min_snr_gamma=5.0), tmp_path / "a", device="cpu", progress=False)
    latent = PRESETS["tiny_latent"]()
    latent.diffusion, latent.min_snr_gamma = flow_config().diffusion, None
    with pytest.raises(ValueError, match="latent"):
        train(latent, tmp_path / "b", device="cpu", progress=False)


def test_the_flow_preset_is_the_mnist_preset_but_for_what_the_network_learns():
    mnist, flow = PRESETS["mnist"](), PRESETS["mnist_flow"]()
    assert flow.diffusion.prediction == "flow" and flow.min_snr_gamma is None
    assert flow.unet.time_scale == 1000.0  # t in [0, 1] reaches the embedding as 1000 t, like the VP model's steps
    flow.diffusion, flow.min_snr_gamma, flow.unet.time_scale = mnist.diffusion, mnist.min_snr_gamma, 1.0
    assert flow == mnist  # same U-Net, images, batches, steps, seed
