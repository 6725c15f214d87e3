r"""Two simple readers of real and generated emoji, each checked on real images before it judges generated ones.

- `ToneReader`: which skin tone does a person or hand show? Emoji draw skin in one of five fixed colours per art
  style (the Unicode modifiers, Fitzpatrick types 1-2 to 6). `fit_tone_reader` learns those ten colours (five tones
  x two styles) from the training images: for each tone and style, the colour that is most common in that tone's
  images and rarest in the other tones' (hair, clothes and outlines are shared across tones, skin is not). Reading
  an image is then counting: each pixel close to one of the ten colours (within `radius` in RGB) votes for its
  tone, and the tone with most votes wins; an image with no such pixel reads as "" (no skin seen).
- `StyleClassifier`: noto or twemoji? A small convolutional network (three layers, 14k weights) trained in seconds
  on the training images' styles: $p(\text{twemoji} \mid x) = \sigma(f(x))$, the binary cross-entropy. (A logistic
  regression on the pixels reads 84% of the test images right but only 61% of the held-out twemoji drawings; five
  hand-made features of flatness and colour count, 78%: style is texture, which convolutions see.)

Both are measured on real held-out images by `tone_accuracy` and `StyleClassifier.accuracy`.
"""

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from minidiff.data.emoji import STYLES, TONES, Emoji
from minidiff.data.pixels import to_model

BIN = 8  # colours are counted in bins of 8 x 8 x 8 RGB levels when the palette is learnt
WHITE = 235  # pixels whose every channel is above this are background


@dataclass
class ToneReader:
    """Ten reference skin colours (tone, style) and the radius within which a pixel counts as skin."""

    palette: np.ndarray  # (5, 2, 3) float RGB in 0 ... 255: TONES x STYLES
    radius: float = 24.0  # Euclidean RGB distance

    def votes(self, images: np.ndarray) -> np.ndarray:
        """uint8 images (N, H, W, 3) -> skin pixels per tone (N, 5): each pixel votes for the tone of its nearest
        reference colour, if that colour is within `radius`."""
        images = check_uint8(images)
        pixels = images.reshape(len(images), -1, 1, 3).astype(np.float32)  # (N, P, 1, 3)
        colours = self.palette.reshape(1, 1, -1, 3)  # (1, 1, 10, 3), tone-major
        # $d_{pk} = \lVert x_p - c_k \rVert_2$ for pixel p and reference colour k
        distance = np.sqrt(((pixels - colours) ** 2).sum(axis=-1))  # (N, P, 10)
        nearest, closest = distance.argmin(axis=-1), distance.min(axis=-1)  # (N, P), (N, P)
        tone = nearest // len(STYLES)  # (N, P): the palette is TONES x STYLES
        counted = closest <= self.radius
        return np.stack([(counted & (tone == i)).sum(axis=1) for i in range(len(TONES))], axis=1)  # (N, 5)

    def read(self, images: np.ndarray) -> list[str]:
        """The tone each image shows, one of TONES, or "" where no pixel is near a skin colour."""
        votes = self.votes(images)
        return [TONES[row.argmax()] if row.max() > 0 else "" for row in votes]


def check_uint8(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}; convert model "
                         "outputs with minidiff.data.pixels.from_model")
    return images


def fit_tone_reader(data: Emoji, radius: float = 24.0) -> ToneReader:
    """Learn the ten skin colours from images with one skin tone each (the training split, typically).

    For tone t and style s, with f_t(c) the share of tone t's non-white pixels that fall in colour bin c:
    the bin maximising f_t(c) - max_{u != t} f_u(c); its reference colour is the mean of those pixels.
    """
    palette = np.zeros((len(TONES), len(STYLES), 3))
    for j, style in enumerate(STYLES):
        pixels = {tone: skin_candidates(data.images[(data.tones == tone) & (data.sources == style)]) for tone in TONES}
        shares = {tone: bin_shares(pixels[tone]) for tone in TONES}
        for i, tone in enumerate(TONES):
            others = np.max([shares[u] for u in TONES if u != tone], axis=0)  # (bins,)
            best = np.argmax(shares[tone] - others)
            in_bin = pixels[tone][bin_index(pixels[tone]) == best]
            palette[i, j] = in_bin.mean(axis=0)
    return ToneReader(palette, radius)


def skin_candidates(images: np.ndarray) -> np.ndarray:
    """Every non-white pixel of the images, (P, 3) int."""
    pixels = images.reshape(-1, 3).astype(np.int64)
    return pixels[pixels.min(axis=1) <= WHITE]


def bin_index(pixels: np.ndarray) -> np.ndarray:
    """(P, 3) RGB -> (P,) the index of each pixel's 8 x 8 x 8 colour bin, among (256 / BIN)^3."""
    q = pixels // BIN
    side = 256 // BIN
    return (q[:, 0] * side + q[:, 1]) * side + q[:, 2]


def bin_shares(pixels: np.ndarray) -> np.ndarray:
    """The share of the pixels in each colour bin, ((256 / BIN)^3,)."""
    counts = np.bincount(bin_index(pixels), minlength=(256 // BIN) ** 3)
    return counts / max(counts.sum(), 1)


def tone_accuracy(reader: ToneReader, images: np.ndarray, tones: np.ndarray) -> float:
    """The share of images (each with one tone of TONES) whose tone is read right."""
    if len(images) != len(tones) or not set(tones.tolist()) <= set(TONES):
        raise ValueError("give one tone of TONES per image (images with one skin tone only)")
    return float(np.mean(np.array(reader.read(images)) == np.asarray(tones)))


class StyleClassifier(nn.Module):
    """A small convolutional classifier, noto (0) or twemoji (1): three stride-2 convolutions (32 -> 4 pixels),
    the mean over positions, one linear layer to the logit of twemoji."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1), nn.SiLU(),
                                    nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.SiLU(),
                                    nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), nn.SiLU())
        self.head = nn.Linear(2 * width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, 32, 32) in [-1, 1] -> logits of twemoji (B,)."""
        return self.head(self.layers(x).mean(dim=(2, 3))).squeeze(1)  # (B, 2w, 4, 4) -> (B, 2w) -> (B,)

    @torch.no_grad()
    def read(self, images: np.ndarray) -> list[str]:
        """uint8 images (N, 32, 32, 3) -> the style of each, one of STYLES."""
        logits = torch.cat([self(batch) for batch in to_model(check_uint8(images)).split(500)])
        return [STYLES[int(logit > 0)] for logit in logits.tolist()]

    def accuracy(self, images: np.ndarray, styles: np.ndarray) -> float:
        """The share of images whose style is read right."""
        return float(np.mean(np.array(self.read(images)) == np.asarray(styles)))


def fit_style_classifier(images: np.ndarray, styles: np.ndarray, steps: int = 400, batch_size: int = 128,
                         lr: float = 3e-3, seed: int = 0) -> StyleClassifier:
    """Train a StyleClassifier on labelled uint8 images (N, 32, 32, 3) with the binary cross-entropy, Adam, random
    batches drawn from `seed`; returned in eval mode."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    x = to_model(check_uint8(images))  # (N, 3, 32, 32)
    y = torch.as_tensor(np.asarray(styles) == STYLES[1], dtype=torch.float32)  # (N,) 1 = twemoji
    model = StyleClassifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        index = torch.randint(0, len(x), (batch_size,), generator=generator)
        loss = F.binary_cross_entropy_with_logits(model(x[index]), y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()
