"""The evaluate command: samples from any sampler, measured by the digit classifier, recorded in the checkpoint."""

import json

import numpy as np
import pytest
import torch

from minidiff.__main__ import main
from minidiff.data.digits import mnist5k
from minidiff.data.pixels import to_model
from minidiff.measure.digits import balanced_labels, digit_quality, generate_digits
from minidiff.models import load_model
from minidiff.training.loop import train
from minidiff.training.presets import tiny_config


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    train(tiny_config(), out, device="cpu", progress=False)
    return out / "model"


def test_balanced_labels_ask_for_every_digit_equally():
    assert np.bincount(balanced_labels(50).numpy()).tolist() == [5] * 10


def test_real_digits_score_high_and_noise_scores_low():
    # The measuring pipeline itself, on inputs whose answer we know.
    images, labels = mnist5k()
    pick = np.arange(0, 5000, 25)  # 200 real digits, 20 of each class
    real = digit_quality(to_model(images[pick]), torch.as_tensor(labels[pick]), seed=1)
    noise = digit_quality(torch.rand(200, 1, 28, 28) * 2 - 1, torch.as_tensor(labels[pick]), seed=1)
    assert real["class_accuracy"] > 0.95 and noise["class_accuracy"] < 0.3
    assert real["frechet_distance"] * 10 < noise["frechet_distance"]


def test_generation_is_seeded_and_counts_network_evaluations(tiny_checkpoint):
    model, info = load_model(tiny_checkpoint)
    labels = balanced_labels(6)
    first, cost = generate_digits(model, info, labels, sampler="ddim", steps=5, seed=3, batch_size=4)
    again, _ = generate_digits(model, info, labels, sampler="ddim", steps=5, seed=3, batch_size=4)
    other, _ = generate_digits(model, info, labels, sampler="ddim", steps=5, seed=4, batch_size=4)
    assert first.shape == (6, 1, 28, 28) and first.abs().max() <= 1
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert cost["nfe"] == 5
    _, guided_cost = generate_digits(model, info, labels, sampler="heun", steps=4, guidance=2.0, batch_size=6)
    assert guided_cost["nfe"] == 7  # Heun: two evaluations per step but the last; guidance batches cond + uncond


def test_evaluate_command_prints_and_records_the_figures(tiny_checkpoint, capsys):
    main(["evaluate", "--model", str(tiny_checkpoint), "--n", "20", "--sampler", "dpm++", "--steps", "4",
          "--device", "cpu", "--record"])
    printed = capsys.readouterr().out
    report = json.loads(printed[: printed.rindex("}") + 1])
    assert 0 <= report["class_accuracy"] <= 1 and report["frechet_distance"] > 0
    assert report["real_vs_real_frechet_distance"] > 0 and report["nfe"] == 4
    recorded = json.loads(tiny_checkpoint.with_suffix(".json").read_text())["metrics"]["dpm++_4_steps"]
    assert recorded["class_accuracy"] == report["class_accuracy"]
    assert recorded["command"].startswith("python -m minidiff evaluate")
