"""MNIST-5k, the digits that ship with minidiff: shapes, types, balanced classes, and labels that match the images."""

import numpy as np
import pytest

from minidiff.data.digits import mnist5k


@pytest.fixture(scope="module")
def digits():
    return mnist5k()


def test_mnist5k_shapes_types_and_classes(digits):
    images, labels = digits
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (5000,) and labels.dtype == np.int64
    assert np.bincount(labels, minlength=10).tolist() == [500] * 10
    assert len({image.tobytes() for image in images}) == 5000, "no duplicated digits"


def test_mnist5k_looks_like_handwritten_digits(digits):
    images, labels = digits
    assert images.max() == 255 and images.min() == 0
    # MNIST digits are white strokes on black, about 13% of full brightness on average.
    assert 20 < images.mean() < 50
    ink = (images > 127).mean(axis=(1, 2))  # (5000,) fraction of bright pixels per digit
    assert ink.min() > 0.01 and ink.max() < 0.5, "every image holds one digit, none is blank or filled"
    # Digits are centred in a 20 x 20 box inside 28 x 28: the outer 2-pixel frame is almost empty.
    frame = np.ones((28, 28), dtype=bool)
    frame[2:-2, 2:-2] = False
    assert images[:, frame].mean() < 2
    # A "1" uses the least ink of all digits, a "0" far more.
    mean_ink = [images[labels == digit].mean() for digit in range(10)]
    assert int(np.argmin(mean_ink)) == 1 and mean_ink[0] > 1.5 * mean_ink[1]


def test_mnist5k_labels_match_the_images(digits):
    """Nearest class mean, fit on half the digits, must name most of the other half (about 80% for MNIST)."""
    images, labels = digits
    x = images.reshape(5000, -1).astype(np.float64) / 255  # (5000, 28, 28) -> (5000, 784)
    fit = np.arange(5000) % 2 == 0
    centroids = np.stack([x[fit & (labels == digit)].mean(axis=0) for digit in range(10)])  # (10, 784)
    distances = ((x[~fit, None, :] - centroids[None]) ** 2).sum(axis=-1)  # (2500, 10)
    accuracy = (distances.argmin(axis=1) == labels[~fit]).mean()
    assert accuracy > 0.7, accuracy


def test_missing_mnist_file_says_how_to_regenerate(tmp_path):
    missing = tmp_path / "mnist5k.npz"
    with pytest.raises(FileNotFoundError, match="scripts/make_mnist5k.py") as error:
        mnist5k(missing)
    assert str(missing) in str(error.value)
