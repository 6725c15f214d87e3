"""The learning curve of a text-to-emoji run: one point per kept model and the final one, each measured on the same
captions and noise, against the images seen; the generator's own CLIP refused as the judge."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minidiff.measure.emoji import Evaluator
from minidiff.measure.emoji_curve import kept_models, learning_curve, learning_point
from minidiff.measure.emoji_report import evaluate_emoji, evaluation_sets
from minidiff.models import clip_encoder_config
from minidiff.pipeline import TextToImage
from minidiff.training.loop import train
from minidiff.training.presets import PRESETS


@pytest.fixture(scope="module")
def run_with_kept_models(tiny_clip, tiny_emoji_vae, tmp_path_factory):
    folder = tmp_path_factory.mktemp("curve_run")
    config = PRESETS["tiny_emoji_text"]()
    config.autoencoder, config.encoder = str(tiny_emoji_vae), clip_encoder_config(tiny_clip)
    config.steps, config.keep_models_at_steps = 5, (2, 4)
    train(config, folder, device="cpu", progress=False)
    return folder


def test_every_kept_model_and_the_final_one_is_a_point(run_with_kept_models, tiny_evaluator):
    stems = kept_models(run_with_kept_models)
    assert [stem.name for stem in stems] == ["step_000002", "step_000004", "model"]
    points = learning_curve(run_with_kept_models, Evaluator.load(tiny_evaluator), n=6, limit=4, steps=2)
    assert [point["step"] for point in points] == [2, 4, 5]
    assert [point["images_seen"] for point in points] == [2 * 16, 4 * 16, 5 * 16]  # the preset's batch of 16
    assert len({point["frechet"] for point in points}) == 3  # other weights, other pictures
    assert len({point["r_precision_real"] for point in points}) == 1  # the same captions and real images each time


def test_a_point_measures_what_evaluate_emoji_measures(tiny_emoji_model, tiny_evaluator):
    pipe, evaluator = TextToImage.load(tiny_emoji_model[0]), Evaluator.load(tiny_evaluator)
    point = learning_point(pipe, evaluator, n=6, limit=4, steps=2, seed=3)
    full = evaluate_emoji(pipe, evaluator, n=6, limit=4, steps=2, seed=3, style_steps=2)
    assert point["r_precision"] == full["r_precision"]["generated"]
    assert point["r_precision_real"] == full["r_precision"]["real"]
    assert point["frechet"] == full["frechet"]["generated_vs_test"]


def test_the_generators_clip_and_a_folder_without_a_model_are_refused(run_with_kept_models, tiny_clip, tmp_path):
    with pytest.raises(ValueError, match="the evaluator is the CLIP the generator reads its prompts with"):
        learning_curve(run_with_kept_models, Evaluator.load(tiny_clip), n=2, limit=2, steps=1)
    with pytest.raises(FileNotFoundError, match="holds no model.json"):
        kept_models(tmp_path)


def test_the_benchmark_writes_the_curve_and_its_figure(run_with_kept_models, tiny_evaluator, tmp_path):
    out = tmp_path / "curve.json"
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "emoji_learning_curve.py"
    subprocess.run([sys.executable, str(script), "--run", str(run_with_kept_models), "--evaluator",
                    str(tiny_evaluator), "--n", "4", "--limit", "2", "--steps", "1", "--out", str(out)], check=True,
                   capture_output=True)
    report = json.loads(out.read_text())
    assert [point["step"] for point in report["points"]] == [2, 4, 5] and report["n"] == 4
    assert "--run" in report["command"]
    assert Image.open(out.with_suffix(".png")).size == (800, 300)


def test_the_r_precision_captions_do_not_depend_on_how_many_test_images_are_taken():
    """evaluate-emoji takes every test image, the learning curve 500: both rank the same training captions, so the
    curve's last point repeats the recorded R-precision."""
    _, _, all_test, rows, _ = evaluation_sets(50, None, 0)
    _, _, some_test, same_rows, _ = evaluation_sets(50, 500, 0)
    assert np.array_equal(rows, same_rows) and len(some_test) == 500 < len(all_test)
    assert not np.array_equal(rows, evaluation_sets(50, None, 1)[3])  # another seed, other captions
