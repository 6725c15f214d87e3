"""Measuring a digit model: balanced labels, the digit classifier's figures on known inputs, and seeded generation
that counts network evaluations. (The evaluate command: tests/cli/test_cli_evaluate.py.)"""

import numpy as np
import pytest
import torch

from minidiff.data.digits import mnist5k
from minidiff.data.pixels import to_model
from minidiff.diffusion.loop import model_denoiser
from minidiff.diffusion.samplers import sample
from minidiff.measure.digits import balanced_labels, digit_quality, generate_digits
from minidiff.models import load_model


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


def test_generation_is_seeded_and_counts_network_evaluations(tiny_digit_model):
    model, info = load_model(tiny_digit_model)
    labels = balanced_labels(6)
    first, cost = generate_digits(model, info, labels, sampler="ddim", steps=5, seed=3, batch_size=4)
    again, _ = generate_digits(model, info, labels, sampler="ddim", steps=5, seed=3, batch_size=4)
    other, _ = generate_digits(model, info, labels, sampler="ddim", steps=5, seed=4, batch_size=4)
    assert first.shape == (6, 1, 28, 28) and first.abs().max() <= 1
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert cost["nfe"] == 5
    _, guided_cost = generate_digits(model, info, labels, sampler="heun", steps=4, guidance=2.0, batch_size=6)
    assert guided_cost["nfe"] == 7  # Heun: two evaluations per step but the last; guidance batches cond + uncond


def test_generation_passes_clip_x0_to_the_sampler(tiny_digit_model):
    # The race's "without clipping" cells: the same noise as the sampler called directly with clip_x0=False.
    model, info = load_model(tiny_digit_model)
    labels = balanced_labels(4)
    unclipped, _ = generate_digits(model, info, labels, sampler="ddim", steps=5, seed=3, clip_x0=False)
    clipped, _ = generate_digits(model, info, labels, sampler="ddim", steps=5, seed=3)
    direct = sample("ddim", model_denoiser(model, class_labels=labels), (4, 1, 28, 28), info.noise_schedule(),
                    info.diffusion["prediction"], steps=5, clip_x0=False, generator=torch.Generator().manual_seed(3))
    assert torch.equal(unclipped, direct.clamp(-1, 1))
    assert not torch.equal(unclipped, clipped)


def test_a_flow_model_draws_digits_with_the_flow_samplers(tmp_path):
    from minidiff.training.loop import train
    from minidiff.training.presets import tiny_flow_config

    config = tiny_flow_config()
    config.steps = 2
    train(config, tmp_path, device="cpu", progress=False)
    model, info = load_model(tmp_path)
    labels = balanced_labels(4)
    first, cost = generate_digits(model, info, labels, sampler="flow_midpoint", steps=3, guidance=2.0, seed=1)
    again, _ = generate_digits(model, info, labels, sampler="flow_midpoint", steps=3, guidance=2.0, seed=1)
    assert first.shape == (4, 1, 28, 28) and torch.equal(first, again) and cost["nfe"] == 6
    _, default_cost = generate_digits(model, info, labels, sampler="flow_euler")
    assert default_cost["nfe"] == 50  # the flow sampler's own number of steps
    with pytest.raises(ValueError, match="flow_euler"):
        generate_digits(model, info, labels, sampler="ddim", steps=2)
