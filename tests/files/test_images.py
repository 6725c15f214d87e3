"""Image files: reading an image or a mask checks its size and says what is wrong."""

import pytest
from PIL import Image

from minidiff.files.images import read_image, read_mask


def test_image_and_mask_files_are_checked(tmp_path):
    Image.new("RGB", (64, 64)).save(tmp_path / "big.png")
    Image.new("RGB", (32, 32), (255, 0, 0)).save(tmp_path / "red.png")
    Image.new("L", (16, 16), 255).save(tmp_path / "small_mask.png")
    Image.new("L", (32, 32), 255).save(tmp_path / "mask.png")
    with pytest.raises(ValueError, match="is 64x64; the model draws 32x32"):
        read_image(tmp_path / "big.png")
    with pytest.raises(ValueError, match="cannot read the image"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="must be 32x32 like the image"):
        read_mask(tmp_path / "small_mask.png")
    assert read_image(tmp_path / "red.png")[0, 0].tolist() == [255, 0, 0]
    assert read_mask(tmp_path / "mask.png").shape == (1, 1, 32, 32) and read_mask(tmp_path / "mask.png").min() == 1


def test_a_colour_mask_is_refused_and_grey_is_a_share(tmp_path):
    Image.new("RGB", (32, 32), (255, 0, 0)).save(tmp_path / "red.png")
    with pytest.raises(ValueError, match="has colours; a mask is black and white"):
        read_mask(str(tmp_path / "red.png"))
    Image.new("RGB", (32, 32), (128, 128, 128)).save(tmp_path / "grey.png")
    assert abs(float(read_mask(str(tmp_path / "grey.png")).mean()) - 128 / 255) < 1e-6


def test_a_folder_written_again_with_fewer_images_keeps_no_stale_ones(tmp_path):
    import json

    import numpy as np

    from minidiff.files.images import write_folder
    frames = [np.zeros((32, 32, 3), dtype=np.uint8)]
    write_folder(tmp_path, np.zeros((5, 32, 32, 3), dtype=np.uint8), frames, {"run": 1})
    (tmp_path / "notes.txt").write_text("mine")
    write_folder(tmp_path, np.full((2, 32, 32, 3), 255, dtype=np.uint8), frames, {"run": 2})
    assert sorted(p.name for p in tmp_path.glob("[0-9][0-9][0-9].png")) == ["000.png", "001.png"]
    assert json.loads((tmp_path / "meta.json").read_text())["files"][:2] == ["000.png", "001.png"]
    assert (tmp_path / "notes.txt").read_text() == "mine"  # nothing but the earlier run's numbered images goes
