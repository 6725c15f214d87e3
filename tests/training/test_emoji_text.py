"""Text to emoji on a frozen CLIP's text tower: the same code path as the Shapes text model, with a CLIP's encoder
copied in and never trained, emoji latents with both captions, and the emoji autoencoder's held-out PSNR."""

import json
from dataclasses import replace

import pytest
import torch

from minidiff.data.emoji import emoji
from minidiff.data.pixels import to_model
from minidiff.files.training_state import load_training_state
from minidiff.models import clip_encoder_config, clip_text_tower, load_autoencoder, load_clip, load_model
from minidiff.nets.autoencoder import Autoencoder, encode_images
from minidiff.nets.bpe import emoji_tokenizer
from minidiff.nets.clip import CLIP
from minidiff.nets.conditioning import ConditionedUNet, EncoderConfig
from minidiff.training.clip import emoji_clip_config
from minidiff.training.config import TrainConfig
from minidiff.training.data import encoded_emoji
from minidiff.training.presets import AUTOENCODER_PRESETS, PRESETS


def test_the_encoder_is_the_clips_text_tower_unchanged_by_training(tiny_emoji_model, tiny_clip):
    folder, run = tiny_emoji_model
    clip, meta = load_clip(tiny_clip)
    tower = clip.text_encoder.state_dict()
    model, info = load_model(folder)
    state = load_training_state(folder / "train_state")
    for name, weight in tower.items():
        assert torch.equal(model.encoder.state_dict()[name], weight), name  # the EMA's, as saved
        assert torch.equal(state.model[f"encoder.{name}"], weight), name  # the online weights after 6 AdamW steps
    assert info.encoder["kind"] == "clip" and info.encoder["clip_sha256"] == meta["tensors_sha256"]
    torch.manual_seed(0)
    fresh = ConditionedUNet(info.unet_config(), EncoderConfig(**info.encoder))
    initial = fresh.unet.state_dict()
    moved = [name for name, weight in model.unet.state_dict().items() if not torch.equal(weight, initial[name])]
    assert moved, "the U-Net itself trained"
    assert len(run.losses) == 6


def test_the_diffusion_loss_never_reaches_the_frozen_encoder(tiny_clip):
    config = PRESETS["tiny_emoji_text"]()
    model = ConditionedUNet(config.unet, clip_encoder_config(tiny_clip))
    tokens = emoji_tokenizer().encode_batch(["fox", "red apple in noto style"], model.encoder.length)
    model(torch.randn(2, 4, 8, 8), torch.tensor([3, 50]), tokens).square().mean().backward()
    assert all(p.grad is None and not p.requires_grad for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.unet.parameters() if p.requires_grad)


def test_a_clip_that_does_not_fit_the_config_is_refused(tiny_clip):
    config = clip_encoder_config(tiny_clip)
    with pytest.raises(ValueError, match="text tower of"):
        clip_text_tower(replace(config, layers=config.layers + 1))
    with pytest.raises(ValueError, match="not the one this model was trained with"):
        clip_text_tower(replace(config, clip_sha256="0" * 64))
    with pytest.raises(ValueError, match="names its CLIP checkpoint"):
        EncoderConfig(kind="clip", dim=32, length=24)
    with pytest.raises(ValueError, match="kind 'clip'"):
        TrainConfig(**{**PRESETS["tiny_emoji_text"]().__dict__, "encoder": EncoderConfig(kind="text", dim=32)})


def test_each_training_image_comes_with_its_plain_and_its_styled_caption(tiny_emoji_vae, tiny_clip, tmp_path):
    encoder = clip_encoder_config(tiny_clip)
    z0, tokens = encoded_emoji(str(tiny_emoji_vae), encoder, cache_dir=tmp_path)
    train = emoji("train")
    n = len(train)
    assert z0.shape == (2 * n, 4, 8, 8) and tokens.shape == (2 * n, encoder.length)
    assert torch.equal(z0[:n], z0[n:])
    tokenizer = emoji_tokenizer()
    for i in (0, 17, n - 1):
        assert tokenizer.decode(tokens[i].tolist()) == train.captions[i]
        assert tokenizer.decode(tokens[n + i].tolist()) == f"{train.captions[i]} in {train.sources[i]} style"
    assert len(list(tmp_path.glob("latents_emoji_*.safetensors"))) == 1
    again, _ = encoded_emoji(str(tiny_emoji_vae), encoder, cache_dir=tmp_path)
    assert torch.equal(again, z0)


def test_a_quick_run_encodes_only_max_images_spread_over_the_split(tiny_emoji_vae, tiny_clip):
    encoder = clip_encoder_config(tiny_clip)
    z0, tokens = encoded_emoji(str(tiny_emoji_vae), encoder, max_images=5)
    train = emoji("train")
    rows = [round(i * (len(train) - 1) / 4) for i in range(5)]  # evenly spaced, first and last included
    autoencoder, info = load_autoencoder(tiny_emoji_vae)
    expected = encode_images(autoencoder, to_model(train.images[rows]), info.scale_factor)  # (5, 4, 8, 8)
    assert z0.shape == (10, 4, 8, 8) and torch.allclose(z0[:5], expected) and torch.equal(z0[5:], z0[:5])
    tokenizer = emoji_tokenizer()
    assert [tokenizer.decode(t.tolist()) for t in tokens[:5]] == train.captions[rows].tolist()
    assert tokenizer.decode(tokens[5].tolist()) == f"{train.captions[0]} in {train.sources[0]} style"


def test_the_emoji_autoencoder_reports_held_out_psnr(tiny_emoji_vae):
    _, info = load_autoencoder(tiny_emoji_vae)
    metrics = info.metrics
    assert info.data["name"] == "emoji" and info.data["n"] == len(emoji("train"))
    assert metrics["eval_images"] == {"test": 706, "heldout_tone": 326, "heldout_style": 95}
    for name in ("psnr_heldout_db", "psnr_heldout_tone_db", "psnr_heldout_style_db", "psnr_train_db"):
        assert 5.0 < metrics[name] < 60.0, name
    assert AUTOENCODER_PRESETS["emoji"]().data == "emoji"


def test_the_shipped_emoji_system_fits_in_60_megabytes():
    """float32 weights: the emoji_text model (U-Net and its copy of the text tower), its autoencoder and two CLIPs."""
    config = PRESETS["emoji_text"]()
    model = ConditionedUNet(config.unet, config.encoder)
    parameters = sum(p.numel() for p in model.parameters())
    parameters += sum(p.numel() for p in Autoencoder(AUTOENCODER_PRESETS["emoji"]().autoencoder).parameters())
    parameters += 2 * sum(p.numel() for p in CLIP(emoji_clip_config().clip).parameters())
    assert 4 * parameters <= 60e6
    assert model.encoder.length == emoji_clip_config().clip.length and config.encoder.kind == "clip"
    assert json.dumps(config.to_dict())  # the run's config is JSON


def test_the_emoji_presets_read_the_clip_presets_text_towers():
    from minidiff.models import clip_tower_config
    from minidiff.training.clip import CLIP_PRESETS

    for model, clip in (("emoji_text", "emoji"), ("tiny_emoji_text", "tiny")):
        config = PRESETS[model]()
        assert config.encoder == clip_tower_config(CLIP_PRESETS[clip]().clip, "emoji_clip")
        assert config.unet.context_dim == config.encoder.dim


def test_a_resumed_emoji_run_is_the_uninterrupted_run(tiny_clip, tiny_emoji_vae, tmp_path):
    from minidiff.training.loop import train

    def config(steps: int) -> TrainConfig:
        c = PRESETS["tiny_emoji_text"]()
        c.autoencoder, c.encoder, c.steps = str(tiny_emoji_vae), clip_encoder_config(tiny_clip), steps
        return c

    whole = train(config(4), tmp_path / "whole", device="cpu", progress=False)
    train(config(2), tmp_path / "cut", device="cpu", progress=False)
    resumed = train(config(4), tmp_path / "cut", resume=True, device="cpu", progress=False)
    assert resumed.losses == whole.losses and len(whole.losses) == 4
    for name, weight in whole.ema.state_dict().items():
        assert torch.equal(resumed.ema.state_dict()[name], weight), name
