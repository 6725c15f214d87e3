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
