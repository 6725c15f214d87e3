"""A diffusion transformer trains, checkpoints and samples through the same code as the U-Net: the training loop, the
checkpoint JSON (which records the backbone; one without it holds a U-Net), load_model and the text-to-image
pipeline."""

import json

import pytest
import torch
from support.checkpoints import make_info, trained_model_and_optimizer
from support.tiny import PROMPT, tiny_text_encoder

from minidiff.models import load_model, save_checkpoint
from minidiff.nets.conditioning import ConditionedUNet
from minidiff.nets.dit import DiT, DiTConfig
from minidiff.nets.unet import UNet, UNetConfig
from minidiff.pipeline import TextToImage
from minidiff.training.config import TrainConfig
from minidiff.training.loop import train
from minidiff.training.presets import PRESETS


@pytest.fixture(scope="module")
def tiny_dit_run(tiny_vae, tmp_path_factory):
    """The tiny_dit preset with a text encoder, 12 steps on the tests' autoencoder: (run folder, finished run)."""
    folder = tmp_path_factory.mktemp("dit")
    config = PRESETS["tiny_dit"]()
    config.autoencoder, config.steps, config.encoder = str(tiny_vae), 12, tiny_text_encoder()
    return folder, train(config, folder, device="cpu", progress=False)


def test_a_dit_run_learns_and_its_checkpoint_records_the_backbone(tiny_dit_run):
    folder, run = tiny_dit_run
    assert len(run.losses) == 12 and sum(run.losses[-4:]) < sum(run.losses[:4])
    meta = json.loads((folder / "model.json").read_text())
    assert meta["backbone"] == "dit" and meta["model"] == run.config.dit.to_dict()
    model, info = load_model(folder)
    assert isinstance(model, ConditionedUNet) and isinstance(model.unet, DiT)
    assert info.network_config() == run.config.dit
    x_t, t, tokens = torch.randn(2, 4, 8, 8), torch.tensor([3, 80]), torch.ones(2, 10, dtype=torch.long)
    with torch.inference_mode():
        torch.testing.assert_close(model(x_t, t, tokens), run.ema.eval()(x_t, t, tokens), rtol=0, atol=0)


def test_the_text_to_image_pipeline_draws_with_a_dit(tiny_dit_run):
    folder, _ = tiny_dit_run
    pipe = TextToImage.load(folder)
    result = pipe(PROMPT, n=2, steps=3, guidance=3.0, seed=0)
    again = pipe(PROMPT, n=2, steps=3, guidance=3.0, seed=0, sampler="ddim")
    assert result.images.shape == (2, 3, 32, 32) and torch.isfinite(result.images).all() and result.nfe == 3
    assert again.images.shape == (2, 3, 32, 32)
    recorded = pipe(PROMPT, n=2, steps=2, guidance=3.0, seed=0, attention=True).attention
    assert len(recorded) == 2 and recorded[0].shape == (2, 10, 32, 32)  # per step: (n, tokens, 32, 32)
    torch.testing.assert_close(recorded[0].sum(dim=1), torch.ones(2, 32, 32))  # each position's weights sum to 1


def test_a_checkpoint_without_a_backbone_entry_holds_a_unet(tmp_path):
    model, _ = trained_model_and_optimizer()
    save_checkpoint(tmp_path / "model", model.state_dict(), make_info())
    meta = json.loads((tmp_path / "model.json").read_text())
    del meta["backbone"]  # as every checkpoint written before the DiT
    (tmp_path / "model.json").write_text(json.dumps(meta))
    loaded, info = load_model(tmp_path / "model")
    assert type(loaded) is UNet and info.backbone == "unet"


def test_a_class_conditional_dit_trains_on_digits_in_the_same_loop(tmp_path):
    config = PRESETS["tiny"]()
    config.unet, config.dit, config.steps = None, DiTConfig(in_channels=1, patch_size=4, dim=16, depth=1, heads=2,
                                                             num_classes=10), 4
    run = train(config, tmp_path, device="cpu", progress=False)
    model, info = load_model(tmp_path)
    assert type(model) is DiT and info.backbone == "dit" and run.step == 4
    assert (tmp_path / "samples" / "step_000004.png").exists()


def test_a_run_takes_exactly_one_network():
    with pytest.raises(ValueError, match="exactly one of unet"):
        TrainConfig(unet=UNetConfig(), dit=DiTConfig(in_channels=1))
    with pytest.raises(ValueError, match="exactly one of unet"):
        TrainConfig(unet=None)
    assert TrainConfig.from_dict(PRESETS["shapes_text_dit"]().to_dict()).network == PRESETS["shapes_text_dit"]().dit
