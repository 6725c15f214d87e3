"""The data that ships with minidiff (MNIST-5k, the photo) and the uint8 <-> model-float conversions."""

import socket

import numpy as np
import pytest
import torch

from minidiff.data.digits import mnist5k
from minidiff.data.photo import photo
from minidiff.data.pixels import from_model, to_model


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


def test_photo_loads_offline(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("photo() must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    image = photo()
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert image.std() > 20, "a photograph, not a flat colour"
    small = photo(32)
    assert small.shape == (32, 32, 3)
    assert np.array_equal(photo(), image)


@pytest.mark.parametrize("channels", [None, 1, 3])
def test_to_model_and_back_is_exact_for_every_uint8_value(channels):
    shape = (4, 8, 8) if channels is None else (4, 8, 8, channels)
    images = np.resize(np.arange(256, dtype=np.uint8), shape)  # every value 0 ... 255 appears
    images.setflags(write=False)  # loaded data may be read-only
    x = to_model(images)
    c = 1 if channels is None else channels
    assert x.shape == (4, c, 8, 8) and x.dtype == torch.float32
    assert x.min().item() == -1.0 and x.max().item() == 1.0
    back = from_model(x)
    assert back.dtype == np.uint8 and back.shape == (4, 8, 8, c)
    assert np.array_equal(back, images.reshape(4, 8, 8, c))


def test_to_model_puts_channels_first():
    images = np.zeros((1, 2, 3, 3), dtype=np.uint8)  # (N, H, W, C)
    images[0, 1, 2, 0] = 255  # the red channel of the pixel at row 1, column 2
    x = to_model(images)  # (N, C, H, W)
    assert x[0, 0, 1, 2].item() == 1.0
    assert (x == 1.0).sum().item() == 1 and (x == -1.0).sum().item() == x.numel() - 1


def test_from_model_clips_out_of_range_values():
    x = torch.tensor([-3.0, -1.0, 0.0, 1.0, 2.5]).reshape(1, 1, 1, 5)
    assert from_model(x).reshape(-1).tolist() == [0, 0, 128, 255, 255]  # 0.0 -> 127.5 -> 128 (round half to even)


@pytest.mark.parametrize("shape", [(28, 28), (1, 2, 3, 4, 5)])
def test_to_model_rejects_wrong_shapes(shape):
    with pytest.raises(ValueError, match="expected images of shape"):
        to_model(np.zeros(shape, dtype=np.uint8))


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 1, 3, 32, 32)])
def test_from_model_rejects_wrong_shapes(shape):
    with pytest.raises(ValueError, match=r"expected a tensor of shape \(N, C, H, W\)"):
        from_model(torch.zeros(shape))
