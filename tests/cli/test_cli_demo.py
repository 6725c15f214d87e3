"""`make demo` runs `python -m minidiff demo`: it must write real pictures and print where they are."""

import json

import numpy as np
from PIL import Image

from minidiff.__main__ import main
from minidiff.cli.demo import EMOJI_PROMPTS, PROMPTS
from minidiff.data.emoji import emoji
from minidiff.files.images import read_mask
from minidiff.measure.shape_checker import read_attributes


def check_prompt_folders(demo, prompts, printed: str, n: int) -> None:
    """One folder per prompt, in order, each with n images, the steps' GIF and the settings; an overview of all."""
    folders = sorted(p for p in demo.iterdir() if p.is_dir() and p.name != "emoji")
    assert len(folders) == len(prompts)
    for folder, prompt in zip(folders, prompts):
        assert str(folder) in printed, "the demo must print each folder it writes"
        meta = json.loads((folder / "meta.json").read_text())
        assert meta["prompt"] == prompt and meta["nfe"] == 20
        for i in range(n):
            assert Image.open(folder / f"{i:03d}.png").size == (32, 32)
        assert Image.open(folder / "denoise.gif").n_frames == 20
    overview = np.asarray(Image.open(demo / "prompts.png").convert("RGB"))
    assert overview.shape[0] > 300 and str(demo / "prompts.png") in printed


def check_demo_folder(out, printed: str, n: int) -> None:
    check_prompt_folders(out / "demo", PROMPTS, printed, n)
    check_prompt_folders(out / "demo" / "emoji", EMOJI_PROMPTS, printed, n)
    pictures = sorted(out.glob("forward_*.png"))
    assert len(pictures) == 4
    for path in pictures:
        assert str(path) in printed
        image = np.asarray(Image.open(path).convert("RGB"))
        assert image.shape[0] > 300 and image.std() > 20, f"{path.name} looks blank"
    check_example_edit_files(out, printed)


def check_example_edit_files(out, printed: str) -> None:
    """The README's editing commands read these two: a 32x32 input the checker reads as asked, and a 32x32 mask,
    white over the circle (regenerate), black elsewhere (keep)."""
    picture = np.asarray(Image.open(out / "example_input.png"))
    assert picture.shape == (32, 32, 3) and str(out / "example_input.png") in printed
    reading = read_attributes(picture)
    assert (reading["colour"], reading["shape"], reading["position"]) == ("red", "circle", "center")
    mask = read_mask(str(out / "example_mask.png"))  # (1, 1, 32, 32), 1 = regenerate
    assert str(out / "example_mask.png") in printed
    assert set(mask.unique().tolist()) == {0.0, 1.0} and mask[0, 0, 16, 16] == 1 and mask[0, 0, 0, 0] == 0
    red = (picture[..., 0] > 200) & (picture[..., 1] < 80)
    assert (mask[0, 0].numpy()[red] == 1).all(), "the mask must cover the whole circle"


def test_the_emoji_prompts_hold_a_held_out_tone_and_a_held_out_style():
    every = emoji(split=None)
    heldout = {split: set(every.subset(every.splits == split).captions.tolist())
               for split in ("heldout_tone", "heldout_style")}
    trained = set(every.subset(every.splits == "train").captions.tolist())
    assert EMOJI_PROMPTS[2] in heldout["heldout_tone"] and EMOJI_PROMPTS[2] not in trained
    thing = EMOJI_PROMPTS[3].removesuffix(" in twemoji style")
    assert thing in heldout["heldout_style"] and thing in trained  # trained, but only in noto style
    train = every.subset(every.splits == "train")
    assert set(train.sources[train.captions == thing].tolist()) == {"noto"}


def test_demo_draws_every_prompt_and_the_forward_process(tiny_text_model, tiny_emoji_model, tmp_path, capsys):
    main(["demo", "--out", str(tmp_path), "--model", str(tiny_text_model), "--emoji-model",
          str(tiny_emoji_model[0]), "--n", "2", "--seed", "0"])
    check_demo_folder(tmp_path, capsys.readouterr().out, n=2)


def test_demo_runs_on_the_shipped_model(tmp_path, capsys):
    main(["demo", "--out", str(tmp_path), "--seed", "0"])
    check_demo_folder(tmp_path, capsys.readouterr().out, n=4)
