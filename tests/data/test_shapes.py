"""The Shapes renderer measured against its written spec, on thousands of samples.

The spec is restated here (sizes, positions, held-out pairs, caption template), and every check measures the
pixels: which colour is at the centre, where the ink is, how much of it there is, which way the triangle points.
"""

import re
from collections import Counter

import numpy as np
import pytest

from minidiff.data.shapes import (
    ATTRIBUTES,
    COLOURS,
    caption_attributes,
    full_caption,
    render,
    sample_attributes,
    shapes,
    short_caption,
)

# The spec, written out independently of minidiff/data/shapes.py.
SPEC_SIZES = {"small": (7, 10), "large": (13, 18)}  # side (or diameter) in pixels, inclusive
SPEC_POSITIONS = {  # bounding-box centre: (cx range, cy range), inclusive
    "top left": ((9, 12), (9, 12)),
    "top right": ((20, 23), (9, 12)),
    "bottom left": ((9, 12), (20, 23)),
    "bottom right": ((20, 23), (20, 23)),
    "center": ((14, 18), (14, 18)),
}
SPEC_SHAPES = ("circle", "square", "triangle")
SPEC_COLOURS = ("red", "yellow", "green", "cyan", "blue", "purple")
SPEC_HELDOUT = {("purple", "triangle"), ("yellow", "square"), ("cyan", "circle")}
JITTER = 10  # per channel, either way
CAPTION = re.compile(r"a (small|large) (\w+) (circle|square|triangle) "
                     r"in the (top left|top right|bottom left|bottom right|center)")


def spec_area(shape: str, side: int) -> float:
    """Area of the named shape of that side: circle of diameter side, square of side side, triangle of base and height
    side."""
    return {"circle": np.pi * side * side / 4, "square": float(side * side), "triangle": side * side / 2}[shape]


def coverage(image: np.ndarray, rgb: tuple[int, int, int]) -> np.ndarray:
    """How much of each pixel the shape covers, 0 ... 1, read from the channel that differs most from white."""
    channel = int(np.argmax(255 - np.array(rgb)))
    return (255.0 - image[..., channel]) / (255.0 - rgb[channel])  # (32, 32, 3) -> (32, 32)


def ink_box(image: np.ndarray) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) pixel edges of the pixels that are not white."""
    ink = np.abs(image.astype(int) - 255).max(axis=-1) >= 3  # (32, 32)
    rows, cols = np.nonzero(ink)
    return cols.min(), cols.max() + 1, rows.min(), rows.max() + 1


@pytest.fixture(scope="module")
def train():
    return shapes(3000, "train", seed=0)


@pytest.fixture(scope="module")
def heldout():
    return shapes(600, "heldout", seed=0)


def both_splits(train, heldout):
    images = np.concatenate([train[0], heldout[0]])
    return images, train[1] + heldout[1], train[2] + heldout[2]


def test_images_are_32x32_rgb_uint8_with_one_shape_on_white(train, heldout):
    for images, captions, attributes in (train, heldout):
        assert images.shape == (len(captions), 32, 32, 3) and images.dtype == np.uint8
    images, _, attributes = both_splits(train, heldout)
    rows, cols = np.mgrid[0:32, 0:32]
    for image, a in zip(images, attributes):
        half = a["side"] / 2 + 1  # the shape's box plus one pixel of rounding
        outside = (np.abs(cols + 0.5 - a["cx"]) > half) | (np.abs(rows + 0.5 - a["cy"]) > half)  # (32, 32)
        assert (image[outside] == 255).all(), "everything away from the shape must be white"
        assert (image != 255).any(), "there must be a shape"


def test_attributes_and_captions_follow_the_spec(train, heldout):
    _, captions, attributes = both_splits(train, heldout)
    for caption, a in zip(captions, attributes):
        assert caption == f"a {a['size']} {a['colour']} {a['shape']} in the {a['position']}"
        assert CAPTION.fullmatch(caption)
        assert a["colour"] in SPEC_COLOURS and a["shape"] in SPEC_SHAPES
        side_low, side_high = SPEC_SIZES[a["size"]]
        assert side_low <= a["side"] <= side_high and isinstance(a["side"], int)
        (x_low, x_high), (y_low, y_high) = SPEC_POSITIONS[a["position"]]
        assert x_low <= a["cx"] <= x_high and y_low <= a["cy"] <= y_high
        assert all(abs(c - b) <= JITTER for c, b in zip(a["rgb"], COLOURS[a["colour"]]))
    # Every integer size of each class is used.
    used = Counter((a["size"], a["side"]) for a in attributes)
    for size, (side_low, side_high) in SPEC_SIZES.items():
        assert all(used[(size, side)] > 0 for side in range(side_low, side_high + 1))


def test_centre_pixel_of_large_shapes_has_the_named_colour(train, heldout):
    images, _, attributes = both_splits(train, heldout)
    # What each name means, channel by channel (R, G, B): which channels are the strong ones.
    strong = {"red": {0}, "green": {1}, "blue": {2}, "yellow": {0, 1}, "cyan": {1, 2}, "purple": {0, 2}}
    offsets, checked = [], 0
    for image, a in zip(images, attributes):
        if a["size"] != "large":
            continue
        pixel = image[int(a["cy"]), int(a["cx"])].astype(int)  # (3,) the pixel holding the box centre
        base = np.array(COLOURS[a["colour"]])
        assert (np.abs(pixel - base) <= JITTER).all(), (a, pixel)
        distances = {name: np.abs(pixel - np.array(rgb)).sum() for name, rgb in COLOURS.items()}
        assert min(distances, key=distances.get) == a["colour"]
        weak = set(range(3)) - strong[a["colour"]]
        assert min(pixel[c] for c in strong[a["colour"]]) > max(pixel[c] for c in weak), (a["colour"], pixel)
        offsets.append(pixel - base)
        checked += 1
    assert checked > 1000
    offsets = np.array(offsets)
    assert offsets.min() <= -JITTER + 1 and offsets.max() >= JITTER - 1, "the jitter must span about +-10"


def test_measured_box_matches_size_and_centre(train, heldout):
    images, _, attributes = both_splits(train, heldout)
    for image, a in zip(images, attributes):
        left, right, top, bottom = ink_box(image)
        assert abs((right - left) - a["side"]) <= 1 and abs((bottom - top) - a["side"]) <= 1, a
        centre_x, centre_y = (left + right) / 2, (top + bottom) / 2
        assert abs(centre_x - a["cx"]) <= 1 and abs(centre_y - a["cy"]) <= 1, a
        (x_low, x_high), (y_low, y_high) = SPEC_POSITIONS[a["position"]]
        assert x_low - 1 <= centre_x <= x_high + 1 and y_low - 1 <= centre_y <= y_high + 1, a


def test_measured_area_names_the_shape_and_separates_the_sizes(train, heldout):
    images, _, attributes = both_splits(train, heldout)
    areas = {(shape, size): [] for shape in SPEC_SHAPES for size in SPEC_SIZES}
    for image, a in zip(images, attributes):
        area = coverage(image, a["rgb"]).sum()
        assert area == pytest.approx(spec_area(a["shape"], a["side"]), rel=0.08), a
        nearest = min(SPEC_SHAPES, key=lambda shape: abs(area - spec_area(shape, a["side"])))
        assert nearest == a["shape"]
        areas[(a["shape"], a["size"])].append(area)
    for shape in SPEC_SHAPES:
        assert max(areas[(shape, "small")]) < min(areas[(shape, "large")]), shape


def test_triangles_point_up(train, heldout):
    images, _, attributes = both_splits(train, heldout)
    triangles = 0
    for image, a in zip(images, attributes):
        if a["shape"] != "triangle":
            continue
        _, _, top, bottom = ink_box(image)
        cover = coverage(image, a["rgb"])
        middle = (top + bottom) // 2
        upper, lower = cover[top:middle].sum(), cover[middle:bottom].sum()
        assert lower > 1.5 * upper, a  # an upright triangle holds 3/4 of its area in the lower half
        triangles += 1
    assert triangles > 500


def test_heldout_pairs_only_in_heldout_and_all_present(train, heldout):
    train_pairs = {(a["colour"], a["shape"]) for a in train[2]}
    assert not train_pairs & SPEC_HELDOUT
    for caption in train[1]:
        match = CAPTION.fullmatch(caption)
        assert (match[2], match[3]) not in SPEC_HELDOUT
    all_pairs = {(colour, shape) for colour in SPEC_COLOURS for shape in SPEC_SHAPES}
    assert train_pairs == all_pairs - SPEC_HELDOUT, "train must hold every other pair"
    heldout_combinations = {(a["colour"], a["shape"], a["size"], a["position"]) for a in heldout[2]}
    assert {(colour, shape) for colour, shape, _, _ in heldout_combinations} == SPEC_HELDOUT
    assert len(heldout_combinations) == 3 * 2 * 5, "every held-out pair in every size and position"


def test_same_seed_same_data_other_seed_other_data():
    images, captions, attributes = shapes(40, "train", seed=3)
    again = shapes(40, "train", seed=3)
    assert np.array_equal(images, again[0]) and captions == again[1] and attributes == again[2]
    other = shapes(40, "train", seed=4)
    assert not np.array_equal(images, other[0]) and captions != other[1]
    assert captions != shapes(40, "heldout", seed=3)[1]


def test_short_captions_keep_the_shape_and_only_drop_words(train):
    rng = np.random.default_rng(0)
    kept = set()
    for a in train[2]:
        full, short = full_caption(a).split(), short_caption(a, rng).split()
        assert a["shape"] in short
        # The short caption is the full one with words left out, in the same order.
        remaining = iter(full)
        assert all(word in remaining for word in short), (full, short)
        assert not any(colour in short and shape in short for colour, shape in SPEC_HELDOUT)
        kept.add((a["size"] in short, a["colour"] in short, "in" in short))
    assert len(kept) == 8, "size, colour and position must each be kept in some captions and dropped in others"


def test_unknown_split_and_shape_are_rejected():
    with pytest.raises(ValueError, match="unknown split 'test'"):
        shapes(1, "test")
    with pytest.raises(ValueError, match="unknown split 'test'"):
        sample_attributes(np.random.default_rng(0), "test")
    with pytest.raises(ValueError, match="unknown shape 'star'"):
        render({"shape": "star", "side": 10, "cx": 16.0, "cy": 16.0, "rgb": (0, 0, 0)})


def test_captions_parse_back_into_their_attributes():
    _, captions, attributes = shapes(50, "train", seed=3)
    assert [caption_attributes(c) for c in captions] == [{k: a[k] for k in ATTRIBUTES} for a in attributes]
    assert caption_attributes("A Red circle") == {"colour": "red", "shape": "circle", "size": None, "position": None}
    with pytest.raises(ValueError, match="names two colours"):
        caption_attributes("a red blue circle")
