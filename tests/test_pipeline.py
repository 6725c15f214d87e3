"""The text-to-image pipeline, its attention maps, and `python -m minidiff sample --prompt`."""

import json
import shutil

import pytest
import torch
from PIL import Image

from minidiff.__main__ import main
from minidiff.data.shapes import caption_attributes, shapes
from minidiff.measure.adherence import evaluation_prompts
from minidiff.measure.shape_checker import ATTRIBUTES
from minidiff.models import load_checkpoint
from minidiff.nets.attention_maps import CrossAttentionRecorder, attention_weights
from minidiff.nets.conditioning import attribute_tokens
from minidiff.nets.layers import CrossAttention
from minidiff.nets.text import MAX_LENGTH
from minidiff.pipeline import TextToImage, sample_shapes
from minidiff.training.loop import train
from minidiff.training.presets import PRESETS

PROMPT = "a small red circle in the top left"


def test_a_seed_gives_the_same_images_twice_and_another_seed_others(tiny_text_model):
    pipe = TextToImage.load(tiny_text_model)
    first = pipe(PROMPT, n=2, steps=4, seed=0)
    again = pipe(PROMPT, n=2, steps=4, seed=0)
    other = pipe(PROMPT, n=2, steps=4, seed=1)
    assert first.images.shape == (2, 3, 32, 32) and first.prompts == [PROMPT, PROMPT]
    assert torch.equal(first.images, again.images)
    assert not torch.allclose(first.images, other.images)
    assert first.nfe == 4


def test_guidance_1_draws_the_conditional_images(tiny_text_model):
    pipe = TextToImage.load(tiny_text_model)
    guided = pipe(["a red circle", "a blue square"], steps=3, guidance=1.0, sampler="ddim")
    plain = pipe(["a red circle", "a blue square"], steps=3, guidance=None, sampler="ddim")
    assert torch.allclose(guided.images, plain.images, atol=1e-4)


def test_a_negative_prompt_changes_the_images_and_needs_guidance(tiny_text_model):
    pipe = TextToImage.load(tiny_text_model)
    plain = pipe(PROMPT, steps=3, guidance=3.0, sampler="ddim")
    negative = pipe(PROMPT, steps=3, guidance=3.0, sampler="ddim", negative_prompt="a blue square")
    assert not torch.allclose(plain.images, negative.images)
    with pytest.raises(ValueError, match="negative prompt acts through guidance"):
        pipe(PROMPT, steps=3, guidance=None, negative_prompt="blue")


def test_unknown_words_are_refused_by_name(tiny_text_model):
    with pytest.raises(ValueError, match="'pink'"):
        TextToImage.load(tiny_text_model)("a pink circle", steps=2)


def test_steps_and_attention_maps_are_recorded_per_step(tiny_text_model):
    pipe = TextToImage.load(tiny_text_model)
    result = pipe(["a red circle", PROMPT], steps=3, keep_steps=True, attention=True)
    assert len(result.steps) == len(result.attention) == 3
    maps = result.attention[-1]
    assert maps.shape == (2, MAX_LENGTH, 32, 32)
    real = result.tokens != 0  # (2, L)
    assert torch.allclose(maps.sum(dim=1), torch.ones(2, 32, 32), atol=1e-4)  # each pixel's weights sum to 1
    assert maps[~real].abs().max() == 0  # padding is never looked at
    assert result.steps[0].x0_image.shape == (2, 3, 32, 32)


def test_recorded_weights_are_the_ones_the_layer_uses():
    torch.manual_seed(0)
    layer = CrossAttention(channels=8, context_dim=6, heads=1, groups=2).eval()
    x, context = torch.randn(2, 8, 4, 4), torch.randn(2, 5, 6)
    mask = torch.tensor([[True, True, True, False, False], [True] * 5])
    with torch.no_grad():
        weights = attention_weights(layer, x, context, mask).flatten(2).transpose(1, 2)  # (B, L, H, W) -> (B, HW, L)
        values = layer.to_kv(context).chunk(2, dim=2)[1]  # (B, L, C)
        mixed = (weights @ values).transpose(1, 2).reshape(2, 8, 4, 4)  # (B, HW, C) -> (B, C, H, W)
        assert torch.allclose(layer(x, context, mask), x + layer.to_out(mixed), atol=1e-5)


def test_the_recorder_refuses_a_model_without_cross_attention():
    with pytest.raises(ValueError, match="no cross-attention"):
        CrossAttentionRecorder(torch.nn.Linear(2, 2))


def test_an_attribute_model_reads_the_attributes_a_prompt_names(tiny_vae, tmp_path):
    config = PRESETS["tiny_latent"]()
    config.autoencoder, config.steps = str(tiny_vae), 1
    train(config, tmp_path / "attributes", device="cpu", progress=False)
    pipe = TextToImage.load(tmp_path / "attributes")
    prompts = ["a small red circle in the top left", "a blue square"]
    wanted = attribute_tokens([caption_attributes(p) for p in prompts])
    assert torch.equal(pipe.tokens(prompts), wanted)
    assert wanted[1].tolist()[3:] == [0, 0]  # size and position left out: padding, as training drops them
    by_prompt = pipe(prompts, steps=3, seed=0).images
    by_tokens = sample_shapes(pipe.model, pipe.schedule, pipe.prediction, pipe.autoencoder, pipe.scale_factor, wanted,
                              "dpm++", 3, guidance=3.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(by_prompt, by_tokens)
    with pytest.raises(ValueError, match="'balloon' names no attribute"):
        pipe("a red balloon")


def test_a_class_model_is_refused_with_what_to_do_instead():
    with pytest.raises(ValueError, match="class-conditional model.*--label"):
        TextToImage.load("mnist")


def test_captions_parse_back_into_their_attributes():
    _, captions, attributes = shapes(50, "train", seed=3)
    assert [caption_attributes(c) for c in captions] == [{k: a[k] for k in ATTRIBUTES} for a in attributes]
    assert caption_attributes("A Red circle") == {"colour": "red", "shape": "circle", "size": None, "position": None}
    with pytest.raises(ValueError, match="names two colours"):
        caption_attributes("a red blue circle")


def test_the_cli_writes_every_promised_file(tiny_text_model, tmp_path):
    out = tmp_path / "out"
    main(["sample", "--model", str(tiny_text_model), "--prompt", PROMPT, "--n", "3", "--steps", "4", "--threads", "1",
          "--seed", "0", "--out", str(out)])
    for name in ("000.png", "001.png", "002.png"):
        with Image.open(out / name) as image:
            assert image.size == (32, 32) and image.mode == "RGB"
    with Image.open(out / "denoise.gif") as gif:
        assert gif.n_frames >= 2
    meta = json.loads((out / "meta.json").read_text())
    assert meta["prompt"] == PROMPT and meta["sampler"] == "dpm++" and meta["guidance"] == 3.0
    assert meta["nfe"] == 4 and meta["image_shape"] == [3, 32, 32]
    assert sorted(meta["files"]) == ["000.png", "001.png", "002.png", "denoise.gif", "grid.png"]


def test_the_cli_explains_an_unknown_word(tiny_text_model, tmp_path):
    with pytest.raises(SystemExit, match="'pink' .* is not in the vocabulary"):
        main(["sample", "--model", str(tiny_text_model), "--prompt", "a pink circle", "--out", str(tmp_path)])


def test_evaluate_text_measures_both_prompt_sets_and_records_them(tiny_text_model, capsys):
    captions, attributes = evaluation_prompts(6, "heldout", seed=0)
    assert all((a["colour"], a["shape"]) in {("purple", "triangle"), ("yellow", "square"), ("cyan", "circle")}
               for a in attributes)
    assert captions[0].startswith("a ") and len(set(captions)) > 1
    model = tiny_text_model.parent / "evaluated"
    shutil.copytree(tiny_text_model, model)
    main(["evaluate-text", "--model", str(model), "--n", "4", "--heldout-n", "3", "--steps", "2", "--record"])
    printed = capsys.readouterr().out
    assert "train_captions colour" in printed and "heldout_pairs colour+shape" in printed
    metrics = load_checkpoint(model)[1].metrics["adherence_dpm++_2_steps_guidance_3.0"]
    assert metrics["train_captions"]["n"] == 4 and metrics["heldout_pairs"]["n"] == 3
    assert 0 <= metrics["train_captions"]["colour"] <= 1
