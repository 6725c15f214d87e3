"""MNIST-5k: 5,000 real handwritten digits, 500 per class, shipped as data/mnist5k.npz; nothing is downloaded.

`mnist5k()` loads them as uint8 images (5000, 28, 28) and int64 labels, from the data folder that
`minidiff.data.paths` finds; `minidiff.data.pixels.to_model` turns the images into the model's floats in [-1, 1].
scripts/make_mnist5k.py regenerates the file.
"""

from pathlib import Path

import numpy as np

from minidiff.data.paths import MNIST_PATH


def mnist5k(path: Path | str = MNIST_PATH) -> tuple[np.ndarray, np.ndarray]:
    """Load MNIST-5k: images uint8 (5000, 28, 28) and labels int64 (5000,), 500 of each digit."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; it ships with the repository "
                                "(regenerate it with `python scripts/make_mnist5k.py`)")
    with np.load(path, allow_pickle=False) as f:
        return f["images"], f["labels"].astype(np.int64)
