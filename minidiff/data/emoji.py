"""Emoji: 7,578 real drawings of 1,901 things in two art styles, 32 x 32 x 3 on white, each with a caption.

Every emoji that both Noto Color Emoji (Google; images Apache-2.0) and Twemoji (Twitter; CC-BY 4.0) draw, once in
each style. A caption is the emoji's CLDR short name, lower-cased, from the emoji package ("fox", "red apple",
"woman firefighter: dark skin tone", "flag: japan"); `styled_captions` adds the style ("fox in noto style").
A *thing* is the caption without its skin tones ("woman firefighter"): 3,789 emoji are 1,901 things.

Shipped as data/emoji32.npz (rebuilt, byte for byte, by scripts/make_emoji.py; what it was built from is
data/emoji32.json). Splits, each image in exactly one:

- "heldout_tone": compositions of person and skin tone never trained on. Half of the things drawn in all five
  single tones (people, hands, gestures) lose one tone each, the tones taken in turn: about 10% of those
  (thing, tone) pairs, both styles. Each such thing is trained on in other tones, and each tone with other things.
- "heldout_style": compositions of thing and style never trained on: for 5% of the things (among those without
  skin tones), the twemoji drawing; their noto drawing is always in "train".
- "test": 10% of the other images, drawn at random (often the other style of the same emoji is in "train").
- "train": the rest.
"""

import json
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from minidiff.data.paths import DATA_DIR

EMOJI_PATH = DATA_DIR / "emoji32.npz"
BPE_PATH = DATA_DIR / "emoji_bpe.json"  # the byte-pair encoding learnt from the training captions (minidiff.nets.bpe)
SPLITS = ("train", "test", "heldout_tone", "heldout_style")
STYLES = ("noto", "twemoji")
TONES = ("light", "medium-light", "medium", "medium-dark", "dark")  # Fitzpatrick types 1-2, 3, 4, 5, 6


@dataclass(frozen=True)
class Emoji:
    """A set of emoji images and, per image, what it shows and where it came from. Every field has length N."""

    images: np.ndarray  # (N, 32, 32, 3) uint8, on white
    captions: np.ndarray  # (N,) str: the CLDR short name, "woman firefighter: dark skin tone"
    things: np.ndarray  # (N,) str: the caption without its tones, "woman firefighter"
    tones: np.ndarray  # (N,) str: "" (none), one of TONES, or two people's "light, dark"
    sources: np.ndarray  # (N,) str: the style, one of STYLES
    codepoints: np.ndarray  # (N,) str: "1f469-1f3ff-200d-1f692"
    licences: np.ndarray  # (N,) str: "Apache-2.0" (noto) or "CC-BY-4.0" (twemoji)
    splits: np.ndarray  # (N,) str: one of SPLITS

    def __len__(self) -> int:
        return len(self.images)

    def styled_captions(self) -> list[str]:
        """Each caption with its style: "fox in noto style", "fox in twemoji style"."""
        return [styled(caption, source) for caption, source in zip(self.captions, self.sources)]

    def subset(self, index: np.ndarray) -> "Emoji":
        """The images at `index` (integers or a boolean mask), with everything said about them."""
        return Emoji(*(getattr(self, f.name)[index] for f in fields(self)))


def styled(caption: str, style: str) -> str:
    """A caption with a style phrase: ("fox", "noto") -> "fox in noto style"."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    return f"{caption} in {style} style"


def emoji(split: str | None = "train", path: Path | str = EMOJI_PATH) -> Emoji:
    """The images of one split (see SPLITS), or all of them (split=None), in the shipped order."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS} or None (all), got {split!r}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; it ships with the repository "
                                "(regenerate it with `python scripts/make_emoji.py`)")
    with np.load(path, allow_pickle=False) as f:
        every = Emoji(images=f["images"], captions=f["caption"], things=f["thing"], tones=f["tones"],
                      sources=f["source"], codepoints=f["codepoints"], licences=f["licence"], splits=f["split"])
    return every if split is None else every.subset(every.splits == split)


def bpe_table(path: Path | str = BPE_PATH) -> dict:
    """The shipped byte-pair encoding as stored: its alphabet, merges and vocabulary (minidiff.nets.bpe reads it)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; it ships with the repository "
                                "(regenerate it with `python scripts/make_emoji.py`)")
    return json.loads(path.read_text(encoding="utf-8"))
