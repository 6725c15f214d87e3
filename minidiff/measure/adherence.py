"""Prompt adherence: does a token-conditioned model draw what the prompt says? Prompts drawn, images read back.

`evaluation_prompts` draws full captions from a Shapes split, with a seed training never used; `draw`
(`minidiff.pipeline.draw`) makes one image per caption through the pipeline (`minidiff.pipeline.TextToImage`: a
text model reads the captions' words, a model conditioned on attributes, chapter 09, the attributes they name);
the rule-based attribute checker
(`minidiff.measure.shape_checker`, which never saw a generated image) reads colour, shape, size and position off
every image, and `prompt_adherence` says how often each matches the prompt. `guidance_sweep` does that at several
guidance scales.

`BARS` (checked by `adherence_report`) are the accuracies a model that follows its prompts should reach, on two
sets of prompts:
- full captions with attributes drawn like the training data's (the train split's distribution, but not its
  images: another seed): colour >= 95%, shape, size and position >= 90% each (guessing scores 1/6 for the colour,
  1/3 for the shape, 1/2 for the size, 1/5 for the position);
- the held-out colour/shape pairs (purple triangle, yellow square, cyan circle), which never appeared in training:
  is the pair drawn right (colour and shape both)? >= 70%: most of the time the model combines a colour and a
  shape it has only seen apart, instead of falling back on a pair it knows (guessing scores 1/18).

`python -m minidiff evaluate-text` (`minidiff.cli.evaluate_text`) measures both and prints the report.
"""

from minidiff.data.shapes import shapes
from minidiff.measure.shape_checker import adherence
from minidiff.pipeline import TextToImage, draw

BARS = {"train_captions": {"colour": 0.95, "shape": 0.90, "size": 0.90, "position": 0.90},
           "heldout_pairs": {"colour+shape": 0.70}}
PROMPT_SEED_OFFSET = 1000  # evaluation prompts come from seed + 1000: never the training images' seed


def evaluation_prompts(n: int, split: str, seed: int = 0) -> tuple[list[str], list[dict]]:
    """n full captions and their attributes, drawn from a split's distribution with a seed training never used."""
    _, captions, attributes = shapes(n, split, seed + PROMPT_SEED_OFFSET)
    return captions, attributes


def prompt_adherence(pipe: TextToImage, n: int, split: str, sampler: str = "dpm++",
                     steps: int = 20, guidance: float = 3.0, seed: int = 0) -> dict:
    """Per-attribute accuracy, "all" and "colour+shape" for n prompts of a split (see `evaluation_prompts`)."""
    captions, attributes = evaluation_prompts(n, split, seed)
    return {"n": n, **adherence(draw(pipe, captions, sampler, steps, guidance, seed), attributes)}


def guidance_sweep(pipe: TextToImage, guidances: list[float], n: int = 200, split: str = "train",
                   sampler: str = "dpm++", steps: int = 20, seed: int = 0) -> dict[float, dict]:
    """Adherence at each guidance scale, the same prompts and noise for all."""
    return {w: prompt_adherence(pipe, n, split, sampler, steps, w, seed) for w in guidances}


def adherence_report(result: dict) -> list[str]:
    """One line per accuracy in BARS: measured, the bar, reached or not."""
    lines = []
    for group, bars in BARS.items():
        for name, bar in bars.items():
            got = result[group][name]
            lines.append(f"{group} {name}: {got:.1%} (bar {bar:.0%}) {'reached' if got >= bar else 'NOT reached'}")
    return lines
