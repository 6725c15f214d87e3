"""Everything measured about a text-to-emoji model, by `python -m minidiff evaluate-emoji`.

The generator draws one image per prompt (`minidiff.pipeline.draw`, seeded batches) and is judged by
tools it never used, each checked on real images first:
- R-precision on n training captions (styled, "fox in noto style"), generated beside real (`r_precision`);
- the Fréchet distance, the test captions' generated images against the test images, beside a real-vs-real
  floor: as many training images against the same test images (`evaluator_frechet`);
- the held-out compositions: a held-out (person, skin tone) pair's tone read by the skin-tone reader and its
  person or gesture among the evaluator's first five of 100 things; a held-out (thing, style) pair's style read by
  the style classifier (`minidiff.measure.emoji_readers`), with the same things asked for in the other style as a
  control; each reader's accuracy on the real images beside;
- memorisation: each sample's nearest training image and the share of near-copies, beside the same for real test
  images (`memorisation`).
"""

import numpy as np
import torch

from minidiff.data.emoji import STYLES, TONES, emoji, styled
from minidiff.data.pixels import from_model, to_model
from minidiff.measure.emoji import evaluator_frechet, memorisation, r_precision, ranked_among
from minidiff.measure.emoji_readers import fit_style_classifier, fit_tone_reader, tone_accuracy
from minidiff.nets.autoencoder import reconstruct
from minidiff.pipeline import TextToImage, draw

BARS = {"r_precision ratio": 0.70, "tone read (generated)": 0.80, "thing in top 5 (generated)": 0.50,
        "style read (generated)": 0.80}  # what the course asks of a tiny Stable Diffusion


def check_evaluator(pipe: TextToImage, evaluator) -> None:
    """The evaluator must not be the CLIP whose text tower the generator reads: it would judge its own words."""
    used = (pipe.info.encoder or {}).get("clip_sha256")
    if used is not None and used == getattr(evaluator, "sha256", None):
        raise ValueError("the evaluator is the CLIP the generator reads its prompts with; evaluate with the other "
                         "CLIP (trained with another seed), e.g. --evaluator emoji_evaluator")


def evaluation_sets(n: int, limit: int | None, seed: int):
    """The images a measurement uses, drawn from the seed: every emoji, the training split, n sorted rows of it for
    R-precision, and the test split (at most `limit` of it, None = all). The rows are drawn first, so every limit
    measures R-precision on the same captions. Returns (every, train, test, rows, rng); the generator rng has drawn
    those two and draws the rest of a measurement's choices."""
    every, rng = emoji(split=None), np.random.default_rng(seed)
    train, test = every.subset(every.splits == "train"), every.subset(every.splits == "test")
    if not isinstance(n, int) or not 1 <= n <= len(train):
        raise ValueError(f"n must be a whole number in 1 ... {len(train)} (training captions), got {n!r}")
    rows = np.sort(rng.choice(len(train), n, replace=False))
    if limit is not None:
        test = test.subset(np.sort(rng.choice(len(test), min(limit, len(test)), replace=False)))
    return every, train, test, rows, rng


def evaluate_emoji(pipe: TextToImage, evaluator, n: int = 500, limit: int | None = None, sampler: str = "dpm++",
                   steps: int = 20, guidance: float = 3.0, seed: int = 0, candidates: int = 100,
                   style_steps: int = 400) -> dict:
    """Measure the model (see the module's docstring). n: training captions for R-precision and memorisation;
    limit: at most this many images of each other set (test, held-out tone, held-out style), None = all of them;
    style_steps: the style classifier's training steps."""
    check_evaluator(pipe, evaluator)
    every, train, test, rows, rng = evaluation_sets(n, limit, seed)
    pool = every.styled_captions()

    def generate(prompts: list[str]) -> torch.Tensor:
        return draw(pipe, prompts, sampler, steps, guidance, seed)  # (N, 3, 32, 32) in [-1, 1]

    styled = train.styled_captions()
    prompts = [styled[i] for i in rows]
    generated = generate(prompts)
    result = {"sampler": sampler, "steps": steps, "guidance": guidance, "seed": seed, "evaluator": evaluator.sha256,
              "r_precision": r_precision(evaluator, generated, train.images[rows], prompts, pool, candidates, seed)}
    floor_rows = rng.choice(len(train), len(test), replace=False)
    result["frechet"] = {"generated_vs_test": round(evaluator_frechet(evaluator, generate(test.styled_captions()),
                                                                     test.images), 4),
                         "train_vs_test": round(evaluator_frechet(evaluator, train.images[floor_rows], test.images),
                                                4),
                         "images": len(test)}
    result["heldout_tone"] = heldout_tone(evaluator, train, every, generate, candidates, seed, limit, rng,
                                          pipe.autoencoder)
    result["heldout_style"] = heldout_style(train, test, every, generate, seed, limit, rng, style_steps)
    result["memorisation"] = memorisation(evaluator, generated, train.images)
    real = memorisation(evaluator, test.images, train.images)
    result["memorisation_real_test"] = {k: v for k, v in real.items() if not isinstance(v, list)}
    return result


def heldout_tone(evaluator, train, every, generate, candidates: int, seed: int, limit: int | None, rng,
                 autoencoder) -> dict:
    """Held-out (person, tone) pairs: the tone read right, and the person or gesture among the evaluator's first
    five of `candidates` things; for generated images and, beside, for the real held-out images, and the tone read
    off those real images passed through the generator's autoencoder (encoded, decoded): what any latent model of
    it can reach at best, since every generated picture comes out of that decoder."""
    part = every.subset((every.splits == "heldout_tone") & np.isin(every.tones, TONES))
    if limit is not None:
        part = part.subset(np.sort(rng.choice(len(part), min(limit, len(part)), replace=False)))
    reader = fit_tone_reader(train)
    images = from_model(generate(part.styled_captions()))  # (N, 32, 32, 3) uint8
    things = sorted(set(every.things.tolist()))
    return {"tone_generated": round(tone_accuracy(reader, images, part.tones), 4),
            "tone_real": round(tone_accuracy(reader, part.images, part.tones), 4),
            "tone_real_through_autoencoder": round(tone_accuracy(reader, round_trip(autoencoder, part.images),
                                                                 part.tones), 4),
            "thing_top5_generated": ranked_among(evaluator, images, part.things.tolist(), things, candidates,
                                                 seed)["top5"],
            "thing_top5_real": ranked_among(evaluator, part.images, part.things.tolist(), things, candidates,
                                            seed)["top5"],
            "images": len(part)}


def round_trip(autoencoder, images: np.ndarray) -> np.ndarray:
    """Real pictures (N, 32, 32, 3) uint8 encoded to their latent means and decoded again, uint8 (chapter 08)."""
    device = next(autoencoder.parameters()).device
    return from_model(reconstruct(autoencoder, to_model(images).to(device)).cpu())


def heldout_style(train, test, every, generate, seed: int, limit: int | None, rng, style_steps: int) -> dict:
    """Held-out (thing, style) pairs: the style the classifier reads off the generated images, and its accuracy on
    the real held-out images and the real test images. Every held-out pair is a twemoji drawing, so a model that
    draws every thing flat would score 100%: beside it, the same things asked for in noto style (trained pairs),
    read as noto or not (style_generated_noto)."""
    part = every.subset(every.splits == "heldout_style")
    if limit is not None:
        part = part.subset(np.sort(rng.choice(len(part), min(limit, len(part)), replace=False)))
    classifier = fit_style_classifier(train.images, train.sources, steps=style_steps, seed=seed)
    images = from_model(generate(part.styled_captions()))
    noto = from_model(generate([styled(caption, STYLES[0]) for caption in part.captions]))
    return {"style_generated": round(classifier.accuracy(images, part.sources), 4),
            "style_generated_noto": round(classifier.accuracy(noto, np.full(len(part), STYLES[0])), 4),
            "style_real": round(classifier.accuracy(part.images, part.sources), 4),
            "style_real_test": round(classifier.accuracy(test.images, test.sources), 4), "images": len(part)}


def bar_figures(result: dict) -> dict[str, float | None]:
    """The figures the course sets a bar for (BARS), read from one measurement."""
    return {"r_precision ratio": result["r_precision"]["ratio"],
            "tone read (generated)": result["heldout_tone"]["tone_generated"],
            "thing in top 5 (generated)": result["heldout_tone"]["thing_top5_generated"],
            "style read (generated)": result["heldout_style"]["style_generated"]}


def bar_report(result: dict) -> list[str]:
    """One line per bar the course sets (BARS): measured, asked for, reached or not. A mean over seeds
    (`mean_over_seeds`) is judged by its mean, and each line shows the seeds' range beside it."""
    measured, by_seed = bar_figures(result), result.get("by_seed", {})
    lines = []
    for name, wanted in BARS.items():
        value = measured[name]
        seen = [figures[name] for figures in by_seed.values() if figures[name] is not None]
        spread = f" (seeds {min(seen):.1%} ... {max(seen):.1%})" if len(seen) > 1 else ""
        lines.append(f"{name}: {'-' if value is None else format(value, '.1%')}{spread} (bar {wanted:.0%}) "
                     f"{'reached' if value is not None and value >= wanted else 'NOT reached'}")
    return lines


def mean_over_seeds(results: list[dict]) -> dict:
    """Several seeds' summaries (each seed draws other captions, distractors and noise) -> one: every figure that
    differs is the seeds' mean, R-precision's ratio is the mean generated over the mean real, and "by_seed" keeps
    each seed's barred figures. One seed's held-out figures rest on a few hundred images (a standard error of about
    two points at 80 % on 326); the mean of three seeds has a standard error sqrt(3) times smaller. Raises
    ValueError when `results` is empty."""
    if not results:
        raise ValueError("results must hold at least one seed's measurement")

    def mean(values: list):
        if all(isinstance(v, dict) for v in values):
            return {key: mean([v[key] for v in values]) for key in values[0]}
        if all(v == values[0] for v in values) or not all(isinstance(v, (int, float)) for v in values):
            return values[0]
        return round(sum(values) / len(values), 4)

    combined = mean([{k: v for k, v in result.items() if k != "seed"} for result in results])
    real = combined["r_precision"]["real"]
    combined["r_precision"]["ratio"] = round(combined["r_precision"]["generated"] / real, 4) if real else None
    seeds = [result["seed"] for result in results]
    return {**combined, "seeds": seeds, "by_seed": {str(seed): bar_figures(r) for seed, r in zip(seeds, results)}}


def summary(result: dict) -> dict:
    """The result without its per-sample lists (nearest neighbours), for a checkpoint's JSON."""
    return {key: ({k: v for k, v in value.items() if not isinstance(v, list)} if isinstance(value, dict) else value)
            for key, value in result.items()}
