"""`make demo` runs `python -m minidiff demo`: it must write real pictures and print where they are."""

import numpy as np
from PIL import Image

from minidiff.__main__ import main


def test_demo_writes_one_picture_per_schedule(tmp_path, capsys):
    main(["demo", "--out", str(tmp_path), "--seed", "0"])
    printed = capsys.readouterr().out
    pictures = sorted(tmp_path.glob("forward_*.png"))
    assert len(pictures) == 4
    for path in pictures:
        assert str(path) in printed, "the demo must print each path it writes"
        image = np.asarray(Image.open(path).convert("RGB"))
        assert image.shape[0] > 300 and image.shape[1] > 300
        assert image.std() > 20, f"{path.name} looks blank"
