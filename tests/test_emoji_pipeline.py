"""The emoji model through the one text-to-image pipeline and the sample command: byte-pair prompts, guidance,
negative prompts, every sampler, img2img and inpainting, `--model emoji` through the sample command, and the shipped
emoji model measured again."""

import json
import shutil

import pytest
import torch
from PIL import Image

import minidiff.files.checkpoint as checkpoint_files
from minidiff.__main__ import main
from minidiff.data.emoji import emoji
from minidiff.data.paths import CHECKPOINT_DIR
from minidiff.diffusion.samplers import SAMPLERS
from minidiff.measure.emoji import Evaluator, r_precision
from minidiff.measure.emoji_report import evaluation_sets
from minidiff.nets.bpe import emoji_tokenizer
from minidiff.pipeline import TextToImage, draw


def test_prompts_become_byte_pair_tokens_and_images(tiny_emoji_model):
    folder, _ = tiny_emoji_model
    pipe = TextToImage.load(folder)
    result = pipe("a fox face", n=2, steps=3, seed=0)
    assert result.images.shape == (2, 3, 32, 32) and result.nfe == 3
    assert torch.equal(result.tokens[0], emoji_tokenizer().encode_batch(["a fox face"], pipe.model.encoder.length)[0])
    assert torch.equal(pipe("a fox face", n=2, steps=3, seed=0).images, result.images)
    assert not torch.allclose(pipe("a fox face", n=2, steps=3, seed=1).images, result.images)


def test_guidance_and_a_negative_prompt_act_on_the_emoji_model(tiny_emoji_model):
    pipe = TextToImage.load(tiny_emoji_model[0])
    prompts = ["fox in noto style", "red apple"]
    guided = pipe(prompts, steps=3, guidance=1.0, sampler="ddim")
    plain = pipe(prompts, steps=3, guidance=None, sampler="ddim")
    assert torch.allclose(guided.images, plain.images, atol=1e-4)
    strong = pipe(prompts, steps=3, guidance=4.0, sampler="ddim")
    negative = pipe(prompts, steps=3, guidance=4.0, sampler="ddim", negative_prompt="twemoji style")
    assert not torch.allclose(strong.images, negative.images)
    with pytest.raises(ValueError, match="holds no character the tokenizer knows"), pytest.warns(UserWarning):
        pipe("☃☃", steps=2)


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))  # the VP samplers; the emoji model is a v-prediction model
def test_every_sampler_draws_emoji(tiny_emoji_model, sampler):
    pipe = TextToImage.load(tiny_emoji_model[0])
    result = pipe("grinning face", steps=2, sampler=sampler)
    assert result.images.shape == (1, 3, 32, 32) and torch.isfinite(result.images).all()


def test_sample_command_draws_from_a_checkpoint_named_emoji(tiny_emoji_model, tmp_path, monkeypatch):
    folder, _ = tiny_emoji_model
    shipped = tmp_path / "checkpoints"
    shipped.mkdir()
    for suffix in (".json", ".safetensors"):
        shutil.copy(folder / f"model{suffix}", shipped / f"emoji{suffix}")
    monkeypatch.setattr(checkpoint_files, "CHECKPOINT_DIR", shipped)
    out = tmp_path / "out"
    main(["sample", "--model", "emoji", "--prompt", "a fox face", "--n", "8", "--steps", "3", "--out", str(out)])
    meta = json.loads((out / "meta.json").read_text())
    assert meta["prompt"] == "a fox face" and meta["n"] == 8 and meta["nfe"] == 3
    assert sorted(meta["files"]) == [f"{i:03d}.png" for i in range(8)] + ["denoise.gif", "grid.png"]
    Image.fromarray(emoji("test").images[0]).save(tmp_path / "in.png")
    Image.new("L", (32, 32), 255).save(tmp_path / "mask.png")
    main(["sample", "--model", "emoji", "--prompt", "fox in twemoji style", "--negative-prompt", "noto style",
          "--init-image", str(tmp_path / "in.png"), "--strength", "0.5", "--steps", "4", "--n", "2",
          "--out", str(tmp_path / "edit")])
    assert json.loads((tmp_path / "edit" / "meta.json").read_text())["nfe"] == 2
    main(["sample", "--model", "emoji", "--prompt", "red apple", "--init-image", str(tmp_path / "in.png"),
          "--mask", str(tmp_path / "mask.png"), "--steps", "3", "--out", str(tmp_path / "inpaint")])
    assert json.loads((tmp_path / "inpaint" / "meta.json").read_text())["strength"] == 1.0


def test_the_shipped_emoji_model_measures_again_as_its_json_records():
    """Every fifth of evaluate-emoji's 500 training captions (a spread over the dataset, whose order groups similar
    emoji: faces first), drawn again and ranked by the evaluator CLIP among 100 captions: R-precision within three
    standard errors of the recorded figure. The emoji system's files (model, autoencoder, both CLIPs) fit in 60 MB."""
    pipe, evaluator = TextToImage.load("emoji"), Evaluator.load("emoji_evaluator")
    recorded = pipe.info.metrics["emoji_dpm++_20_steps_guidance_3.0"]["r_precision"]
    every, train, _, rows, _ = evaluation_sets(500, None, 0)
    rows = rows[::5]  # (100,)
    prompts = [train.styled_captions()[i] for i in rows]
    generated = draw(pipe, prompts, "dpm++", 20, 3.0, 0)  # (100, 3, 32, 32)
    measured = r_precision(evaluator, generated, train.images[rows], prompts, every.styled_captions(), 100, 0)
    p = recorded["generated"]
    assert abs(measured["generated"] - p) <= 3 * (p * (1 - p) / 100) ** 0.5 + 0.01, (measured, recorded)
    names = ("emoji", "emoji_vae", "emoji_clip", "emoji_evaluator")
    assert sum((CHECKPOINT_DIR / f"{name}{suffix}").stat().st_size for name in names
               for suffix in (".json", ".safetensors")) <= 60e6
