"""`python -m minidiff sample`: on a class-conditional model (every promised file, seeds, every sampler and its
options, errors that say what to do), and with --prompt on a text model, img2img and inpainting included."""

import json

import pytest
from PIL import Image
from support.tiny import PROMPT

from minidiff.__main__ import main
from minidiff.data.shapes import shapes
from minidiff.files.images import GIF_SCALE


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    main(["train", "--config", "tiny", "--out", str(out), "--steps", "4", "--device", "cpu", "--quiet"])
    return out


def test_sample_command_writes_every_promised_file(tiny_run, tmp_path):
    out = tmp_path / "samples"
    main(["sample", "--model", str(tiny_run), "--label", "7", "--n", "5", "--seed", "0", "--sampler", "ddpm",
          "--steps", "6", "--out", str(out), "--device", "cpu"])
    for i in range(5):
        with Image.open(out / f"{i:03d}.png") as image:
            assert image.size == (28, 28) and image.mode == "L"
    with Image.open(out / "grid.png") as grid:
        assert grid.size == (5 * 30 + 2, 30 + 2)  # 5 columns of 28 + 2 padding, one row
    with Image.open(out / "denoise.gif") as gif:
        assert gif.size == ((4 * 30 + 2) * GIF_SCALE, 32 * GIF_SCALE)  # the first 4 images, enlarged
        assert gif.n_frames == 1 + 6  # x_T, then after each of the 6 steps
    meta = json.loads((out / "meta.json").read_text())
    assert meta["labels"] == [7] * 5 and meta["n"] == 5 and meta["steps"] == 6 and meta["nfe"] == 6
    assert meta["seed"] == 0 and meta["sampler"] == "ddpm" and meta["seconds"] > 0
    assert sorted(meta["files"]) == sorted(p.name for p in out.iterdir() if p.name != "meta.json")


def test_sample_command_is_reproducible_and_labels_cycle_by_default(tiny_run, tmp_path):
    for name in ["a", "b"]:
        main(["sample", "--model", str(tiny_run / "model.json"), "--n", "3", "--steps", "3",
              "--out", str(tmp_path / name), "--device", "cpu"])
    assert (tmp_path / "a" / "grid.png").read_bytes() == (tmp_path / "b" / "grid.png").read_bytes()
    assert json.loads((tmp_path / "a" / "meta.json").read_text())["labels"] == [0, 1, 2]


@pytest.mark.parametrize("arguments, message", [
    (["--model", "no_such_model"], "no checkpoint named 'no_such_model'"),
    (["--label", "12"], r"label 12 is outside 0 \.\.\. 9"),
    (["--steps", "1000"], "steps must be a whole number in 1"),
    (["--n", "0"], "--n must be a whole number >= 1"),
])
def test_sample_command_errors_say_what_is_wrong(tiny_run, tmp_path, arguments, message):
    argv = ["sample", "--model", str(tiny_run), "--out", str(tmp_path), "--device", "cpu", *arguments]
    if "--model" in arguments:
        argv = ["sample", "--out", str(tmp_path), "--device", "cpu", *arguments]
    with pytest.raises(SystemExit, match=message):
        main(argv)


@pytest.mark.parametrize("sampler, options, nfe", [
    ("ddim", ["--eta", "0.5", "--spacing", "trailing"], 4),
    ("dpm++", ["--guidance", "3"], 4),
    ("dpm++sde", ["--spacing", "trailing"], 4),
    ("euler", ["--spacing", "leading"], 4),
    ("heun", ["--guidance", "2", "--guidance-rescale", "0.7"], 2 * 4 - 1),
])
def test_sample_command_runs_every_sampler_and_records_its_settings(tiny_run, tmp_path, sampler, options, nfe):
    out = tmp_path / sampler
    main(["sample", "--model", str(tiny_run), "--n", "3", "--steps", "4", "--sampler", sampler, *options,
          "--out", str(out), "--device", "cpu"])
    meta = json.loads((out / "meta.json").read_text())
    given = dict(zip(options[::2], options[1::2]))
    assert meta["sampler"] == sampler and meta["steps"] == 4 and meta["nfe"] == nfe
    assert meta["spacing"] == given.get("--spacing", "linspace")
    assert meta["eta"] == (float(given.get("--eta", 0.0)) if sampler == "ddim" else None)
    assert meta["guidance"] == (float(given["--guidance"]) if "--guidance" in given else None)
    with Image.open(out / "denoise.gif") as gif:
        assert gif.n_frames == 1 + 4  # one frame per step, whatever a step costs
    assert sorted(meta["files"]) == sorted(p.name for p in out.iterdir() if p.name != "meta.json")


@pytest.mark.parametrize("arguments, message", [
    (["--sampler", "dpm++", "--eta", "0.5"], "--eta is DDIM's"),
    (["--sampler", "ddim", "--eta", "2"], r"eta must be a number in \[0.0, 1.0\]"),
    (["--guidance-rescale", "0.7"], "--guidance-rescale needs --guidance"),
    (["--guidance", "3", "--guidance-rescale", "1.5"], r"rescale must be a number in \[0.0, 1.0\]"),
])
def test_sample_command_option_errors_say_what_to_do(tiny_run, tmp_path, arguments, message):
    with pytest.raises(SystemExit, match=message):
        main(["sample", "--model", str(tiny_run), "--n", "1", "--steps", "2", "--out", str(tmp_path),
              "--device", "cpu", *arguments])


# ------------------------------------------------------------------ with --prompt, on a text model


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


def test_cli_img2img_and_inpainting(tiny_text_model, tmp_path):
    Image.fromarray(shapes(1, "train", seed=0)[0][0]).save(tmp_path / "in.png")
    Image.new("L", (32, 32), 255).save(tmp_path / "mask.png")
    main(["sample", "--model", str(tiny_text_model), "--prompt", "a blue circle", "--init-image",
          str(tmp_path / "in.png"), "--strength", "0.5", "--steps", "4", "--n", "2", "--out", str(tmp_path / "a")])
    meta = json.loads((tmp_path / "a" / "meta.json").read_text())
    assert meta["strength"] == 0.5 and meta["nfe"] == 2 and Image.open(tmp_path / "a" / "001.png").size == (32, 32)
    assert meta["start_timestep"] == 0.5 * 100 - 1  # SDEdit's t_0 = strength * T, 0-based (the tiny model: T = 100)
    main(["sample", "--model", str(tiny_text_model), "--prompt", "a blue circle", "--init-image",
          str(tmp_path / "in.png"), "--mask", str(tmp_path / "mask.png"), "--steps", "4", "--out", str(tmp_path / "b")])
    meta = json.loads((tmp_path / "b" / "meta.json").read_text())
    assert meta["strength"] == 1.0 and meta["start_timestep"] == 99
    with pytest.raises(SystemExit, match="strength must be a number in"):
        main(["sample", "--model", str(tiny_text_model), "--prompt", "a blue circle", "--init-image",
              str(tmp_path / "in.png"), "--strength", "2", "--out", str(tmp_path / "c")])
    with pytest.raises(SystemExit, match="give it with --init-image"):
        main(["sample", "--model", str(tiny_text_model), "--prompt", "a blue circle", "--strength", "0.5",
              "--out", str(tmp_path / "d")])
    with pytest.raises(SystemExit, match="goes with --prompt"):
        main(["sample", "--model", "mnist", "--init-image", str(tmp_path / "in.png"), "--out", str(tmp_path / "e")])


# ------------------------------------------------------------------ a rectified-flow model


@pytest.fixture(scope="module")
def tiny_flow_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny_flow"
    main(["train", "--config", "tiny_flow", "--out", str(out), "--steps", "4", "--device", "cpu", "--quiet"])
    return out


@pytest.mark.parametrize("sampler, options, nfe, frames", [
    (None, [], 4, 1 + 4),  # flow_euler by default
    ("flow_midpoint", ["--guidance", "2"], 2 * 4, 1 + 2 * 4),  # every visit of the loop: midpoints and ends
    ("flow_heun", ["--guidance", "3", "--guidance-rescale", "0.5", "--label", "3"], 2 * 4 - 1, 1 + 4),
])
def test_a_flow_model_samples_with_the_flow_samplers(tiny_flow_run, tmp_path, sampler, options, nfe, frames):
    out = tmp_path / str(sampler)
    chosen = [] if sampler is None else ["--sampler", sampler]
    main(["sample", "--model", str(tiny_flow_run), "--n", "3", "--steps", "4", *chosen, *options,
          "--out", str(out), "--device", "cpu"])
    meta = json.loads((out / "meta.json").read_text())
    assert meta["sampler"] == (sampler or "flow_euler") and meta["steps"] == 4 and meta["nfe"] == nfe
    assert meta["spacing"] is None and meta["variance"] is None
    assert meta["guidance"] == (float(options[1]) if "--guidance" in options else None)
    with Image.open(out / "000.png") as image:
        assert image.size == (28, 28)
    with Image.open(out / "denoise.gif") as gif:
        assert gif.n_frames == frames


def test_a_flow_sample_is_the_flow_sampler_of_the_package(tiny_flow_run, tmp_path):
    """The command draws exactly what minidiff.diffusion.samplers draws from the same checkpoint and seed."""
    import numpy as np
    import torch

    from minidiff.data.pixels import from_model
    from minidiff.diffusion.guidance import guided_denoiser
    from minidiff.diffusion.samplers import sample
    from minidiff.models import load_model

    main(["sample", "--model", str(tiny_flow_run), "--n", "2", "--steps", "3", "--sampler", "flow_heun",
          "--guidance", "2", "--label", "5", "--seed", "4", "--out", str(tmp_path), "--device", "cpu"])
    model, _ = load_model(tiny_flow_run)
    labels = torch.full((2,), 5)
    with torch.inference_mode():
        x0 = sample("flow_heun", guided_denoiser(model, 2.0, class_labels=labels), (2, 1, 28, 28), None, "flow",
                    steps=3, clip_x0=True, generator=torch.Generator().manual_seed(4))
    expected = from_model(x0)
    with Image.open(tmp_path / "001.png") as image:
        assert np.array_equal(np.asarray(image), expected[1, :, :, 0])


@pytest.mark.parametrize("arguments, message", [
    (["--sampler", "ddpm"], "rectified-flow model .* --sampler flow_euler / flow_heun / flow_midpoint, not ddpm"),
    (["--spacing", "trailing"], "--spacing and --eta are for the VP samplers"),
    (["--steps", "0"], "steps must be a whole number >= 1"),
])
def test_a_flow_model_refuses_what_it_cannot_do(tiny_flow_run, tmp_path, arguments, message):
    with pytest.raises(SystemExit, match=message):
        main(["sample", "--model", str(tiny_flow_run), "--n", "1", "--out", str(tmp_path), "--device", "cpu",
              *arguments])


def test_a_vp_model_refuses_the_flow_samplers(tiny_run, tmp_path):
    with pytest.raises(SystemExit, match="--sampler flow_euler draws from rectified-flow models"):
        main(["sample", "--model", str(tiny_run), "--n", "1", "--steps", "2", "--sampler", "flow_euler",
              "--out", str(tmp_path), "--device", "cpu"])
