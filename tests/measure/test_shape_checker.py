"""The rule-based shape checker measured against the attributes each Shapes image was drawn with.

Ground truth comes from the renderer (`minidiff.data.shapes`), never from the checker: clean renders of both splits
and a grid of the spec's extremes (smallest and largest sizes at the corners of every position range, colour jitter at
+-10) must all read right; mild noise and a slight blur must still read right; blank and garbage images read as no
shape. The geometric statistics are also checked against their closed forms on shapes drawn here with numpy.
"""

import itertools
import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from minidiff.data.pixels import to_model
from minidiff.data.shapes import COLOURS, POSITIONS, SHAPES, SIZES, render, shapes
from minidiff.measure.shape_checker import ATTRIBUTES, adherence, centred_moments, coverage, read_attributes, read_shape

ALL_RIGHT = {name: 1.0 for name in (*ATTRIBUTES, "all", "colour+shape")}


@pytest.fixture(scope="module")
def clean() -> tuple[np.ndarray, list[dict]]:
    """2000 training-split and 1000 held-out-split renders with their attributes."""
    train_images, _, train_attributes = shapes(2000, "train", seed=11)
    heldout_images, _, heldout_attributes = shapes(1000, "heldout", seed=12)
    return np.concatenate([train_images, heldout_images]), train_attributes + heldout_attributes


def extreme_attributes() -> list[dict]:
    """Every colour x shape, the smallest and largest side of each size, at the four corners of every position range."""
    rng = np.random.default_rng(0)
    grid = []
    for colour, shape, (size, side_range), (position, (x_range, y_range)) in itertools.product(
            COLOURS, SHAPES, SIZES.items(), POSITIONS.items()):
        for side, cx, cy in itertools.product(side_range, x_range, y_range):
            rgb = np.clip(np.array(COLOURS[colour]) + rng.choice([-10, 10], size=3), 0, 255)
            grid.append({"colour": colour, "shape": shape, "size": size, "position": position,
                         "side": side, "cx": float(cx), "cy": float(cy), "rgb": tuple(int(v) for v in rgb)})
    return grid


def test_clean_renders_of_both_splits_all_read_right(clean):
    images, attributes = clean
    assert adherence(images, attributes) == ALL_RIGHT


def test_extreme_sizes_and_position_range_corners_all_read_right():
    attributes = extreme_attributes()  # 6 colours x 3 shapes x 4 sides x 5 positions x 4 corners = 1440
    images = np.stack([render(a) for a in attributes])
    assert len(images) == 1440
    assert adherence(images, attributes) == ALL_RIGHT


def test_mild_noise_still_reads_right(clean):
    images, attributes = clean
    noise = np.random.default_rng(0).normal(0.0, 8.0, images.shape)  # std 8/255 of the range
    noisy = np.clip(images + noise, 0, 255).round().astype(np.uint8)
    scores = adherence(noisy, attributes)
    assert scores["all"] >= 0.98, scores  # measured: 1.0


def test_slight_blur_still_reads_right(clean):
    images, attributes = clean
    blurred = np.stack([np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius=1.0)))
                        for image in images[::3]])  # Gaussian of std 1 px
    scores = adherence(blurred, attributes[::3])
    assert scores["all"] >= 0.98, scores  # measured: 1.0
    assert all(reading["shape"] is not None for reading in read_attributes(blurred))  # a blur is still a shape


def test_blank_and_garbage_images_read_as_no_shape():
    rng = np.random.default_rng(0)
    white = np.full((32, 32, 3), 255, np.uint8)
    speck = white.copy()
    speck[5, 5] = 0  # one black pixel is not a shape
    garbage = [white, speck, np.zeros((32, 32, 3), np.uint8),
               rng.integers(0, 256, (32, 32, 3)).astype(np.uint8),  # uniform noise
               np.clip(255 + rng.normal(0, 8, (32, 32, 3)), 0, 255).astype(np.uint8)]  # mild noise on white
    for reading in read_attributes(np.stack(garbage)):
        assert reading == {name: None for name in ATTRIBUTES}
    _, _, attributes = shapes(len(garbage), "train", seed=0)
    assert adherence(np.stack(garbage), attributes)["colour"] == 0.0


def test_one_image_gives_one_dict_and_a_batch_a_list(clean):
    images, attributes = clean
    one = read_attributes(images[0])
    assert one == {name: attributes[0][name] for name in ATTRIBUTES}
    assert read_attributes(images[:3]) == [{name: a[name] for name in ATTRIBUTES} for a in attributes[:3]]


def test_model_tensors_in_minus_one_one_read_like_uint8(clean):
    images, _ = clean
    x = to_model(images[:200])  # (200, 3, 32, 32) in [-1, 1]
    assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
    assert read_attributes(x) == read_attributes(images[:200])


@pytest.mark.parametrize("bad", [
    np.zeros((32, 32), np.uint8),  # no channels
    np.zeros((4, 28, 28, 3), np.uint8),  # wrong size
    np.zeros((4, 3, 32, 32), np.uint8),  # channels first as uint8
    np.zeros((4, 32, 32, 3), np.float32),  # floats must come as a model tensor
    torch.zeros(4, 32, 32, 3),  # channels last as a tensor
    torch.zeros(3, 32, 32),  # no batch axis
])
def test_wrong_inputs_raise_a_clear_value_error(bad):
    with pytest.raises(ValueError, match="expected"):
        read_attributes(bad)


def test_adherence_counts_each_attribute_separately(clean):
    images, attributes = clean
    images, attributes = images[:100], [dict(a) for a in attributes[:100]]
    other_colour = {"red": "blue", "blue": "red", "yellow": "cyan", "cyan": "yellow", "green": "purple",
                    "purple": "green"}
    for a in attributes[:10]:
        a["colour"] = other_colour[a["colour"]]
    for a in attributes[5:25]:
        a["position"] = "center" if a["position"] != "center" else "top left"
    scores = adherence(images, attributes)
    assert scores == {"colour": 0.9, "shape": 1.0, "size": 1.0, "position": 0.8, "all": 0.75,
                      "colour+shape": 0.9}
    with pytest.raises(ValueError, match="one attribute dict per image"):
        adherence(images, attributes[:99])


def supersampled(inside, side: float = 12.0, factor: int = 16) -> np.ndarray:
    """A blue shape centred at (16, 16), drawn here with numpy at 16x and box-filtered -> uint8 (32, 32, 3).

    inside(x, y) says whether a point, in units of the side and relative to the centre, lies in the shape.
    """
    coords = (np.arange(32 * factor) + 0.5) / factor  # sub-pixel centres in output pixel units
    x, y = np.meshgrid((coords - 16) / side, (coords - 16) / side)  # (512, 512) each, y grows downwards
    covered = inside(x, y).astype(np.float64).reshape(32, factor, 32, factor).mean(axis=(1, 3))  # -> (32, 32)
    blue = np.array(COLOURS["blue"], dtype=np.float64)
    return np.round(255 - covered[..., None] * (255 - blue)).astype(np.uint8)  # (32, 32, 3)


def test_shape_statistics_match_their_closed_forms():
    blue = np.array(COLOURS["blue"], dtype=np.float64)
    square = supersampled(lambda x, y: (abs(x) <= 0.5) & (abs(y) <= 0.5))
    disk = supersampled(lambda x, y: x**2 + y**2 <= 0.25)
    triangle = supersampled(lambda x, y: (abs(y) <= 0.5) & (abs(x) <= (y + 0.5) / 2))  # apex up
    moments = {name: centred_moments(coverage(image, blue))
               for name, image in (("square", square), ("circle", disk), ("triangle", triangle))}
    # Areas: side^2, pi side^2 / 4, side^2 / 2 with side 12.
    assert moments["square"]["area"] == pytest.approx(144, rel=0.01)
    assert moments["circle"]["area"] == pytest.approx(math.pi * 36, rel=0.01)
    assert moments["triangle"]["area"] == pytest.approx(72, rel=0.01)
    # E[x^2 y^2] / (E[x^2] E[y^2]) = 1 for a square, 2/3 for a disk (pixel averaging moves it slightly).
    for name, ratio in (("square", 1.0), ("circle", 2 / 3)):
        m = moments[name]
        assert m["xxyy"] / (m["xx"] * m["yy"]) == pytest.approx(ratio, abs=0.03)
    # Vertical skewness of an apex-up triangle: -2 sqrt(2) / 5; its centroid sits side / 6 below the box centre.
    m = moments["triangle"]
    assert m["yyy"] / m["yy"] ** 1.5 == pytest.approx(-2 * math.sqrt(2) / 5, abs=0.03)
    assert m["cy"] == pytest.approx(16 + 12 / 6, abs=0.02)
    assert [read_shape(moments[name]) for name in ("square", "circle", "triangle")] == [
        "square", "circle", "triangle"]
