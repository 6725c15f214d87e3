"""Reading what the views return (the widgets inside a widget tree, the PNG frames of a static book player), and small
example images to show."""

import base64
import io
import re

import ipywidgets
import numpy as np
import torch
from PIL import Image

from minidiff.views import widgets


def find(widget: ipywidgets.Widget, kind: type) -> list:
    """Every widget of the given type inside a widget tree, depth first."""
    found = [widget] if isinstance(widget, kind) else []
    for child in getattr(widget, "children", ()):
        found += find(child, kind)
    return found


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def embedded_frames(html: str) -> list[bytes]:
    """The PNG frames of a jshtml player; their base64 text is split over lines ending in a backslash."""
    found = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=\\\n]+)", html)
    return [base64.b64decode(data.replace("\\\n", "")) for data in found]


def small_images() -> dict[str, torch.Tensor]:
    """The forward-process examples (digits, shapes, the photo), two of each kind and a 16-pixel photo."""
    return widgets.forward_examples(n_digits=2, n_shapes=2, photo_size=16)
