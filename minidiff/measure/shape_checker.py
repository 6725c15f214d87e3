"""Read colour, shape, size and position off a Shapes image, by explainable rules (no learned weights).

Used to measure prompt adherence of generated shapes and to check that autoencoder reconstructions keep their
attributes. It knows the Shapes spec (`minidiff.data.shapes` constants) but no generator code, so a model cannot
"agree with itself".

The rules, one per function:
1. Ink: how far each pixel is from white, summed over R, G, B. A shape drawn in colour c covering a fraction f
   of a pixel gives that pixel exactly ink = f * ink(c), because the 4x box filter averages linearly.
2. Foreground: the pixels with ink above `INK_THRESHOLD` (well above the ink of mild noise on white), and of
   those the largest 8-connected blob, so that stray specks do not count. A blob smaller than
   `MIN_BLOB_PIXELS` or larger than `MAX_BLOB_PIXELS` is no shape (a blank page, a speck, pure noise):
   every attribute then reads None, which never equals a wanted attribute.
3. Colour: the mean colour of the saturated core (foreground pixels with at least `CORE_SHARE` of the largest
   ink), then the nearest named colour of `shapes.COLOURS` in RGB.
4. Coverage: f = ink / ink(core colour), clipped to [0, 1], over the blob grown by one pixel (to take in
   faint edge pixels); the shape's area is the sum of f, and its moments (centroid, spread) are taken with
   f as weights, which locates the shape to a fraction of a pixel.
5. Shape: a triangle (apex up) has its mass low: its vertical skewness is -0.57, a square's and a circle's 0.
   A square's x and y are independent, a disk's are not: E[x^2 y^2] / (E[x^2] E[y^2]) is 1 for a square and
   2/3 for a disk. Both statistics are computed about the centroid. (Moments rather than the fill ratio of a
   bounding box: at 32 x 32 a box edge is uncertain by a pixel, while moments use every pixel's coverage.)
6. Size: the side (or diameter) from the area: side^2 for a square, pi side^2 / 4 for a circle, side^2 / 2 for
   a triangle; "small" or "large" by the threshold halfway between the two ranges of `shapes.SIZES`.
7. Position: the centre of the bounding box is the centroid, except for a triangle, whose centroid sits
   side / 6 below it; then the nearest region of `shapes.POSITIONS` (distance 0 inside a region).

Shape descriptors from image moments follow Hu 1962, "Visual pattern recognition by moment invariants".

Image coordinates: pixel (row i, column j) covers [j, j + 1] x [i, i + 1], so its centre is (j + 0.5, i + 0.5),
the convention `shapes.render` draws in; y grows downwards.
"""

import itertools
import math

import numpy as np
import torch

from minidiff.data.pixels import from_model
from minidiff.data.shapes import ATTRIBUTES, COLOURS, POSITIONS, SIZE, SIZES

INK_THRESHOLD = 60.0  # of 765: noise of std 8 per channel gives ink std ~14 on white
MIN_BLOB_PIXELS = 4  # a smaller blob is a speck, not a shape (the smallest shape, a 7 px triangle, has ~30)
# A larger blob is not one shape: the largest, an 18 px square, covers at most 19 x 19 = 361 pixels, blurred
# with a Gaussian of std 2 px about 500; pure noise about 1000.
MAX_BLOB_PIXELS = 24 * 24
CORE_SHARE = 0.8  # core pixels have at least this share of the largest ink
# A triangle's vertical skewness is -0.57, a square's or circle's 0. Blur adds symmetric spread, which shrinks a
# triangle's skewness (measured: -0.28 for side 7 under a Gaussian blur of std 1 px), so the line sits nearer 0.
TRIANGLE_SKEWNESS = -0.15
# E[x^2 y^2] / (E[x^2] E[y^2]) is 2/3 for a disk and 1 for a square. Blur makes x and y of a disk look more
# independent (measured: up to 0.82 for side 7 under a blur of std 1 px), squares stay above 0.95.
SQUARE_XY_RATIO = 0.88
AREA_PER_SIDE_SQUARED = {"circle": math.pi / 4, "square": 1.0, "triangle": 0.5}  # area / side^2
SMALL_LARGE_SIDE = (SIZES["small"][1] + SIZES["large"][0]) / 2  # 11.5: a side below it is "small"
NO_SHAPE = {name: None for name in ATTRIBUTES}


def as_uint8_batch(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """Images as uint8 (N, 32, 32, 3): from uint8 (32, 32, 3) or (N, 32, 32, 3), or a float tensor (N, 3, 32, 32)."""
    if isinstance(images, torch.Tensor):
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, SIZE, SIZE):
            raise ValueError(f"expected a tensor of shape (N, 3, {SIZE}, {SIZE}) in [-1, 1], "
                             f"got {tuple(images.shape)}")
        return from_model(images)  # (N, 3, 32, 32) -> (N, 32, 32, 3)
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images in [0, 255], got dtype {images.dtype}; pass model outputs "
                         "as a torch tensor (N, 3, 32, 32) in [-1, 1]")
    if images.ndim == 3:
        images = images[None]  # (32, 32, 3) -> (1, 32, 32, 3)
    if images.ndim != 4 or tuple(images.shape[1:]) != (SIZE, SIZE, 3):
        raise ValueError(f"expected uint8 images of shape ({SIZE}, {SIZE}, 3) or (N, {SIZE}, {SIZE}, 3), "
                         f"got {tuple(images.shape)}")
    return images


def ink(image: np.ndarray) -> np.ndarray:
    """How far each pixel is from white, summed over channels: uint8 (32, 32, 3) -> float (32, 32) in [0, 765]."""
    # \mathrm{ink}(p) = \sum_{c \in \{R, G, B\}} (255 - p_c)
    return (255.0 - image.astype(np.float64)).sum(axis=-1)  # (32, 32, 3) -> (32, 32)


def foreground(image: np.ndarray) -> np.ndarray:
    """The pixels clearly not white: bool (32, 32)."""
    return ink(image) > INK_THRESHOLD


def largest_blob(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected group of True pixels in mask (32, 32): stray specks of noise are dropped."""
    h, w = mask.shape
    labels = np.zeros((h, w), dtype=np.int64)  # 0: background or not yet visited
    sizes = [0]  # sizes[k]: number of pixels in blob k (blob 0 is the background)
    for start in zip(*np.nonzero(mask)):
        if labels[start]:
            continue
        label = len(sizes)
        sizes.append(0)
        labels[start] = label
        stack = [start]
        while stack:  # flood fill: visit every foreground pixel that touches the blob
            i, j = stack.pop()
            sizes[label] += 1
            for ni, nj in itertools.product((i - 1, i, i + 1), (j - 1, j, j + 1)):
                if 0 <= ni < h and 0 <= nj < w and mask[ni, nj] and not labels[ni, nj]:
                    labels[ni, nj] = label
                    stack.append((ni, nj))
    return labels == int(np.argmax(sizes))


def grow(mask: np.ndarray) -> np.ndarray:
    """mask (32, 32) grown by one pixel in the 8 directions, to take in the faint edge pixels of a shape."""
    padded = np.pad(mask, 1)  # (32, 32) -> (34, 34)
    h, w = mask.shape
    return np.logical_or.reduce([padded[1 + di:1 + di + h, 1 + dj:1 + dj + w]
                                 for di in (-1, 0, 1) for dj in (-1, 0, 1)])


def core_colour(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean RGB of the saturated core: foreground pixels with at least CORE_SHARE of the largest ink -> (3,)."""
    pixel_ink = ink(image)
    core = mask & (pixel_ink >= CORE_SHARE * pixel_ink[mask].max())
    return image[core].astype(np.float64).mean(axis=0)  # (n_core, 3) -> (3,)


def nearest_colour(rgb: np.ndarray) -> str:
    """The named colour of shapes.COLOURS closest to rgb in Euclidean RGB distance."""
    return min(COLOURS, key=lambda name: float(np.linalg.norm(rgb - np.array(COLOURS[name]))))


def coverage(image: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """The share of each pixel the shape covers, f = ink / ink(rgb), clipped to [0, 1] -> (32, 32)."""
    full_ink = float((255.0 - rgb).sum())
    # f = \mathrm{ink}(p) / \mathrm{ink}(\mathrm{rgb}), since a pixel covered by a share f is (1 - f) white + f rgb
    return np.clip(ink(image) / max(full_ink, 1.0), 0.0, 1.0)


def centred_moments(weights: np.ndarray) -> dict:
    """Area, centroid and centred moments of a weight map (32, 32), pixel centres at j + 0.5, i + 0.5."""
    rows, cols = np.indices(weights.shape, dtype=np.float64)  # (32, 32) each
    # A = \sum_{ij} f_{ij}
    area = float(weights.sum())
    # \bar x = \frac{1}{A} \sum_{ij} f_{ij} (j + 1/2), \bar y = \frac{1}{A} \sum_{ij} f_{ij} (i + 1/2)
    cx = float((weights * (cols + 0.5)).sum() / area)
    cy = float((weights * (rows + 0.5)).sum() / area)
    x, y = cols + 0.5 - cx, rows + 0.5 - cy

    def mean(values: np.ndarray) -> float:
        # \mathbb E[\mathrm{values}] = \frac{1}{A} \sum_{ij} f_{ij} \mathrm{values}_{ij}, the central moments \mu_{pq} / A of Hu 1962
        return float((weights * values).sum() / area)

    return {"area": area, "cx": cx, "cy": cy, "xx": mean(x**2), "yy": mean(y**2),
            "xxyy": mean(x**2 * y**2), "yyy": mean(y**3)}


def read_shape(m: dict) -> str:
    """Triangle if the mass sits low (negative vertical skewness), else square or circle by x-y independence."""
    # skewness = \mathbb E[y^3] / \mathbb E[y^2]^{3/2}; for a triangle with apex up (y grows downwards) it is -2\sqrt{2} / 5
    skewness = m["yyy"] / max(m["yy"], 1e-9) ** 1.5
    if skewness < TRIANGLE_SKEWNESS:
        return "triangle"
    # xy_ratio = \mathbb E[x^2 y^2] / (\mathbb E[x^2] \mathbb E[y^2]): 1 for a square (x, y independent), \frac{r^4/24}{(r^2/4)^2} = 2/3 for a disk
    xy_ratio = m["xxyy"] / max(m["xx"] * m["yy"], 1e-9)
    return "square" if xy_ratio > SQUARE_XY_RATIO else "circle"


def read_size(m: dict, shape: str) -> str:
    """The side from the area, area = AREA_PER_SIDE_SQUARED[shape] * side^2, then "small" or "large"."""
    # A = k side^2, k = AREA_PER_SIDE_SQUARED[shape]  =>  side = \sqrt{A / k}
    side = math.sqrt(m["area"] / AREA_PER_SIDE_SQUARED[shape])
    return "small" if side < SMALL_LARGE_SIDE else "large"


def box_centre(m: dict, shape: str) -> tuple[float, float]:
    """Centre of the bounding box: the centroid, moved up by side / 6 for a triangle (centroid at 2/3 of the height)."""
    if shape != "triangle":
        return m["cx"], m["cy"]
    side = math.sqrt(m["area"] / AREA_PER_SIDE_SQUARED[shape])
    # a triangle's centroid is at 2/3 of its height from the apex: \bar y = c_y - side/2 + 2 side/3 = c_y + side/6
    return m["cx"], m["cy"] - side / 6


def nearest_position(cx: float, cy: float) -> str:
    """The region of shapes.POSITIONS nearest to (cx, cy); the distance to a region is 0 inside it."""
    def distance(name: str) -> float:
        (x_low, x_high), (y_low, y_high) = POSITIONS[name]
        dx = max(x_low - cx, 0.0, cx - x_high)
        dy = max(y_low - cy, 0.0, cy - y_high)
        return math.hypot(dx, dy)

    return min(POSITIONS, key=distance)


def read_one(image: np.ndarray) -> dict:
    """The attributes of one uint8 image (32, 32, 3); all None when there is no shape."""
    mask = foreground(image)
    if not mask.any():
        return dict(NO_SHAPE)
    mask = largest_blob(mask)
    if not MIN_BLOB_PIXELS <= mask.sum() <= MAX_BLOB_PIXELS:
        return dict(NO_SHAPE)
    rgb = core_colour(image, mask)
    m = centred_moments(coverage(image, rgb) * grow(mask))
    shape = read_shape(m)
    return {"colour": nearest_colour(rgb), "shape": shape, "size": read_size(m, shape),
            "position": nearest_position(*box_centre(m, shape))}


def read_attributes(images: np.ndarray | torch.Tensor) -> dict | list[dict]:
    """Read colour, shape, size, position: one dict for an image (32, 32, 3), a list for a batch.

    Accepts uint8 (32, 32, 3), uint8 (N, 32, 32, 3), or a float tensor (N, 3, 32, 32) in [-1, 1].
    """
    batch = as_uint8_batch(images)
    readings = [read_one(image) for image in batch]
    single = isinstance(images, np.ndarray) and images.ndim == 3
    return readings[0] if single else readings


def adherence(images: np.ndarray | torch.Tensor, attributes: list[dict]) -> dict:
    """Share of images whose reading matches the wanted attributes (dicts as shapes.sample_attributes returns).

    Returns accuracy per attribute, "all" (all four right) and "colour+shape" (both right), each in [0, 1].
    """
    batch = as_uint8_batch(images)
    if len(batch) != len(attributes) or len(batch) == 0:
        raise ValueError(f"need one attribute dict per image and at least one image, "
                         f"got {len(batch)} images and {len(attributes)} dicts")
    readings = [read_one(image) for image in batch]
    right = {name: np.array([r[name] == a[name] for r, a in zip(readings, attributes)]) for name in ATTRIBUTES}
    result = {name: float(right[name].mean()) for name in ATTRIBUTES}
    result["all"] = float(np.logical_and.reduce([right[name] for name in ATTRIBUTES]).mean())
    result["colour+shape"] = float((right["colour"] & right["shape"]).mean())
    return result
