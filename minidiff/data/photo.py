"""One real photograph, for pictures of the forward process on a natural image: the Grace Hopper portrait that
matplotlib bundles, centre-cropped and resized to uint8 (size, size, 3) by `photo()`. Nothing is downloaded.
"""

import numpy as np
from PIL import Image


def photo(size: int = 64) -> np.ndarray:
    """A real photograph (Grace Hopper, bundled with matplotlib), centre-cropped and resized -> uint8 (size, size, 3)."""
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        image = Image.open(f).convert("RGB")
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8)
