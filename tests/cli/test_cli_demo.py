"""`make demo` runs `python -m minidiff demo`: it must write real pictures and print where they are."""

import json

import numpy as np
from PIL import Image

from minidiff.__main__ import main
from minidiff.cli.demo import PROMPTS
from minidiff.files.images import read_mask
from minidiff.measure.shape_checker import read_attributes


def check_demo_folder(out, printed: str, n: int) -> None:
    folders = sorted(p for p in (out / "demo").iterdir() if p.is_dir())
    assert len(folders) == len(PROMPTS)
    for folder, prompt in zip(folders, PROMPTS):
        assert str(folder) in printed, "the demo must print each folder it writes"
        meta = json.loads((folder / "meta.json").read_text())
        assert meta["prompt"] == prompt and meta["nfe"] == 20
        for i in range(n):
            assert Image.open(folder / f"{i:03d}.png").size == (32, 32)
        assert Image.open(folder / "denoise.gif").n_frames == 20
    overview = np.asarray(Image.open(out / "demo" / "prompts.png").convert("RGB"))
    assert overview.shape[0] > 300 and str(out / "demo" / "prompts.png") in printed
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


def test_demo_draws_every_prompt_and_the_forward_process(tiny_text_model, tmp_path, capsys):
    main(["demo", "--out", str(tmp_path), "--model", str(tiny_text_model), "--n", "2", "--seed", "0"])
    check_demo_folder(tmp_path, capsys.readouterr().out, n=2)


def test_demo_runs_on_the_shipped_model(tmp_path, capsys):
    main(["demo", "--out", str(tmp_path), "--seed", "0"])
    check_demo_folder(tmp_path, capsys.readouterr().out, n=4)
