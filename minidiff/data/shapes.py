"""The Shapes dataset: one coloured shape on white, with a caption saying what and where it is.

Every image is drawn by pillow at 4x (128 x 128) and box-filtered down to 32 x 32 x 3.
The vocabulary is small on purpose, so that a CPU-sized text-to-image model can learn it
and a checker can measure whether a picture obeys its prompt.

Three colour/shape pairs are held out of training entirely (purple triangle, yellow square,
cyan circle): the "heldout" split holds only those, to test whether the model composes
attributes it has seen separately.
"""

import numpy as np
from PIL import Image, ImageDraw

SIZE = 32  # output images are SIZE x SIZE x 3
SCALE = 4  # drawn at SCALE x and downsampled with a box filter
BACKGROUND = (255, 255, 255)
COLOUR_JITTER = 10  # each channel moves uniformly by up to +-10 per image
COLOURS = {
    "red": (220, 30, 30),
    "yellow": (240, 200, 20),
    "green": (30, 160, 50),
    "cyan": (20, 190, 210),
    "blue": (30, 60, 220),
    "purple": (130, 40, 180),
}
SHAPES = ("circle", "square", "triangle")
ATTRIBUTES = ("colour", "shape", "size", "position")  # what a caption names, in the order of full_caption's words
SIZES = {"small": (7, 10), "large": (13, 18)}  # side (or diameter) in pixels, inclusive integer range
POSITIONS = {  # the centre (cx, cy) of the shape's bounding box: ((x_low, x_high), (y_low, y_high))
    "top left": ((9, 12), (9, 12)),
    "top right": ((20, 23), (9, 12)),
    "bottom left": ((9, 12), (20, 23)),
    "bottom right": ((20, 23), (20, 23)),
    "center": ((14, 18), (14, 18)),
}
EXAMPLE_ATTRIBUTES = {"colour": "red", "shape": "circle", "size": "small", "position": "top left"}
HELDOUT_PAIRS = (("purple", "triangle"), ("yellow", "square"), ("cyan", "circle"))
SPLITS = ("train", "heldout")


def full_caption(attributes: dict) -> str:
    """The caption naming all four attributes, e.g. "a small red circle in the top left"."""
    a = attributes
    return f"a {a['size']} {a['colour']} {a['shape']} in the {a['position']}"


def short_caption(attributes: dict, rng: np.random.Generator) -> str:
    """A training caption that keeps the shape and drops each other attribute with probability 1/2.

    Short prompts like "a red circle" or "a triangle in the top right" then work at sampling time.
    The shape word is always kept so a caption always names a thing.
    """
    a = attributes
    words = ["a"]
    if rng.random() < 0.5:
        words.append(a["size"])
    if rng.random() < 0.5:
        words.append(a["colour"])
    words.append(a["shape"])
    if rng.random() < 0.5:
        words += ["in", "the", a["position"]]
    return " ".join(words)


def caption_attributes(caption: str) -> dict:
    """The inverse of `full_caption`: the attributes a caption names, None for those it leaves out.

    "a small red circle in the top left" -> {"colour": "red", "shape": "circle", "size": "small", "position":
    "top left"}; "a red circle" -> colour and shape only. The filler words "a", "in", "the" are skipped; any other
    word that names no attribute, or a second value for one attribute, is a ValueError listing the known words.
    """
    words = caption.lower().replace(",", " ").split()
    attributes = {"colour": None, "shape": None, "size": None, "position": None}
    known = {"colour": tuple(COLOURS), "shape": SHAPES, "size": tuple(SIZES)}
    index = 0
    while index < len(words):
        pair = " ".join(words[index:index + 2])
        name, value, length = None, None, 1
        if pair in POSITIONS:
            name, value, length = "position", pair, 2
        elif words[index] in POSITIONS:
            name, value = "position", words[index]
        else:
            for attribute, values in known.items():
                if words[index] in values:
                    name, value = attribute, words[index]
        if name is None and words[index] not in ("a", "an", "in", "the"):
            raise ValueError(f"{words[index]!r} names no attribute of a shape; a caption uses the colours "
                             f"{list(COLOURS)}, shapes {list(SHAPES)}, sizes {list(SIZES)} and positions "
                             f"{list(POSITIONS)}, e.g. {full_caption(EXAMPLE_ATTRIBUTES)!r}")
        if name is not None and attributes[name] is not None:
            raise ValueError(f"the caption {caption!r} names two {name}s ({attributes[name]!r} and {value!r}); "
                             "give one")
        if name is not None:
            attributes[name] = value
        index += length
    return attributes


def sample_attributes(rng: np.random.Generator, split: str = "train") -> dict:
    """Draw colour, shape, size and position for one image of the given split, plus its exact geometry."""
    if split == "train":
        while True:
            colour, shape = str(rng.choice(list(COLOURS))), str(rng.choice(SHAPES))
            if (colour, shape) not in HELDOUT_PAIRS:
                break
    elif split == "heldout":
        colour, shape = HELDOUT_PAIRS[rng.integers(len(HELDOUT_PAIRS))]
    else:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    size = str(rng.choice(list(SIZES)))
    position = str(rng.choice(list(POSITIONS)))
    side_low, side_high = SIZES[size]
    (x_low, x_high), (y_low, y_high) = POSITIONS[position]
    jitter = rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, size=3)
    rgb = tuple(int(v) for v in np.clip(np.array(COLOURS[colour]) + jitter, 0, 255))
    return {
        "colour": colour, "shape": shape, "size": size, "position": position,
        "side": int(rng.integers(side_low, side_high + 1)),
        "cx": float(rng.uniform(x_low, x_high)), "cy": float(rng.uniform(y_low, y_high)),
        "rgb": rgb,
    }


def render(attributes: dict) -> np.ndarray:
    """Draw one shape from its geometry (keys shape, side, cx, cy, rgb) -> uint8 (32, 32, 3)."""
    a = attributes
    canvas = Image.new("RGB", (SIZE * SCALE, SIZE * SCALE), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    # Bounding box in 4x pixel edges; pillow's box includes its right/bottom pixel, hence the -1.
    left, top = round((a["cx"] - a["side"] / 2) * SCALE), round((a["cy"] - a["side"] / 2) * SCALE)
    right, bottom = left + a["side"] * SCALE - 1, top + a["side"] * SCALE - 1
    if a["shape"] == "circle":
        draw.ellipse([left, top, right, bottom], fill=a["rgb"])
    elif a["shape"] == "square":
        draw.rectangle([left, top, right, bottom], fill=a["rgb"])
    elif a["shape"] == "triangle":  # upright isosceles: apex at top centre, base along the bottom
        draw.polygon([((left + right) / 2, top), (left, bottom), (right, bottom)], fill=a["rgb"])
    else:
        raise ValueError(f"unknown shape {a['shape']!r}; choose one of {SHAPES}")
    small = canvas.resize((SIZE, SIZE), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.uint8)  # (32, 32, 3)


def shapes(n: int, split: str = "train", seed: int = 0) -> tuple[np.ndarray, list[str], list[dict]]:
    """Render n captioned shapes, deterministically for a seed.

    Returns images uint8 (n, 32, 32, 3), full captions, and one attribute dict per image
    (colour, shape, size, position, plus the geometry side, cx, cy, rgb it was drawn with).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    attributes = [sample_attributes(rng, split) for _ in range(n)]
    images = np.stack([render(a) for a in attributes]) if n else np.zeros((0, SIZE, SIZE, 3), np.uint8)
    return images, [full_caption(a) for a in attributes], attributes


def grid_attributes() -> list[dict]:
    """The 12 conditions of a training run's sample grid: each colour as a small and a large shape, shapes and
    places varying, so one glance shows whether colour, shape, size and position are followed."""
    colours, places = list(COLOURS), list(POSITIONS)
    return [{"colour": colours[i % 6], "shape": SHAPES[i % 3], "size": ("small", "large")[i // 6],
             "position": places[i % 5]} for i in range(12)]
