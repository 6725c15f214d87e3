"""The uint8 <-> model-float conversions: exact round trips, channels first, clipping, clear errors."""

import numpy as np
import pytest
import torch

from minidiff.data.pixels import from_model, to_model


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
