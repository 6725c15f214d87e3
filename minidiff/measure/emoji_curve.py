"""A learning curve: what more training buys the text-to-emoji model.

A run keeps its EMA model at chosen steps (`TrainConfig.keep_models_at_steps`, in RUN/models/step_NNNNNN) beside
its final one (RUN/model). Each is measured the way `python -m minidiff evaluate-emoji` measures the shipped model,
by the evaluator CLIP it never used: R-precision on n training captions (Xu et al. 2018; generated beside real)
and the Fréchet distance of the test captions' images to the test images (Heusel et al. 2017), both against the
images the model had seen (steps x batch size). The same seed draws the same captions and noise at every point, so
the points differ only by the weights.

    .venv/bin/python benchmarks/emoji_learning_curve.py --run runs/emoji --n 500 --limit 500
"""

import json
from pathlib import Path

import torch

from minidiff.measure.emoji import evaluator_frechet, r_precision
from minidiff.measure.emoji_report import check_evaluator, evaluation_sets
from minidiff.pipeline import TextToImage, draw


def kept_models(run: Path | str) -> list[Path]:
    """The checkpoint stems of a run's kept models and of its final model, in order of steps.

    Raises FileNotFoundError when `run` holds no model.json (not a finished or checkpointed run)."""
    run = Path(run)
    if not (run / "model.json").is_file():
        raise FileNotFoundError(f"{run} holds no model.json: give the folder of a diffusion run (--out of train)")
    kept = sorted(path.with_suffix("") for path in (run / "models").glob("step_*.json"))
    return kept + [run / "model"]


def images_seen(run: Path | str, step: int) -> int:
    """Training images (image-caption pairs) seen by step `step` of the run: step x its batch size."""
    config = json.loads((Path(run) / "train_state.json").read_text())["config"]
    return step * config["batch_size"]


def learning_point(pipe: TextToImage, evaluator, n: int = 500, limit: int | None = 500, sampler: str = "dpm++",
                   steps: int = 20, guidance: float = 3.0, seed: int = 0, candidates: int = 100) -> dict:
    """R-precision on n training captions (top-1 among `candidates`, generated and real) and the Fréchet distance of
    generated to real test images (at most `limit` of them), for one model. The caption and image choices follow
    `evaluate_emoji`'s for the same seed (`evaluation_sets`). Raises ValueError when the evaluator is the
    CLIP the generator reads its prompts with."""
    check_evaluator(pipe, evaluator)
    every, train, test, rows, _ = evaluation_sets(n, limit, seed)
    prompts = [train.styled_captions()[i] for i in rows]
    generated = draw(pipe, prompts, sampler, steps, guidance, seed)  # (n, 3, 32, 32)
    precision = r_precision(evaluator, generated, train.images[rows], prompts, every.styled_captions(), candidates,
                            seed)
    drawn_test = draw(pipe, test.styled_captions(), sampler, steps, guidance, seed)  # (len(test), 3, 32, 32)
    return {"step": pipe.info.step, "r_precision": precision["generated"], "r_precision_real": precision["real"],
            "frechet": round(evaluator_frechet(evaluator, drawn_test, test.images), 4), "test_images": len(test)}


def learning_curve(run: Path | str, evaluator, device: torch.device | str = "cpu", **settings) -> list[dict]:
    """learning_point for every kept model of the run and its final one, each with the images it had seen."""
    points = []
    for stem in kept_models(run):
        point = learning_point(TextToImage.load(stem, device), evaluator, **settings)
        points.append({**point, "images_seen": images_seen(run, point["step"]), "checkpoint": stem.name})
    return points
