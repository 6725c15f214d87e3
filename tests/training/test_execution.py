"""How a step is computed, not what: gradient accumulation takes the steps of one big batch, mixed precision trains
and resumes exactly, channels-last and torch.compile change nothing but speed, and the command line sets them."""

import functools
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from support.tiny import tiny_train_config

from minidiff.__main__ import main
from minidiff.files.training_state import load_training_state
from minidiff.models import load_model
from minidiff.training.config import TrainConfig, VAETrainConfig
from minidiff.training.loop import train
from minidiff.training.presets import AUTOENCODER_PRESETS
from minidiff.training.vae import train_vae


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module, atol: float) -> None:
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(y, x, rtol=0, atol=atol, msg=name)


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """The tiny preset for 3 steps, float32, one batch per step: what the variants below are compared with."""
    return train(tiny_train_config(steps=3), tmp_path_factory.mktemp("plain"), device="cpu", progress=False)


def test_accumulating_two_micro_batches_takes_the_steps_of_one_batch(plain, tmp_path):
    accumulated = train(tiny_train_config(steps=3, accumulate=2), tmp_path, device="cpu", progress=False)
    torch.testing.assert_close(torch.tensor(accumulated.losses), torch.tensor(plain.losses), rtol=0, atol=1e-5)
    assert_same_weights(plain.model, accumulated.model, atol=1e-5)
    assert_same_weights(plain.ema, accumulated.ema, atol=1e-5)


def test_the_autoencoder_accumulates_too(tmp_path):
    config = replace(AUTOENCODER_PRESETS["tiny"](), steps=3)
    train_vae(config, tmp_path / "one", progress=False)
    train_vae(replace(config, accumulate=4), tmp_path / "four", progress=False)
    one, four = (load_training_state(tmp_path / name / "train_state") for name in ("one", "four"))
    torch.testing.assert_close(torch.tensor(four.loss_history), torch.tensor(one.loss_history), rtol=0, atol=1e-5)
    for name, value in one.model.items():
        torch.testing.assert_close(four.model[name], value, rtol=0, atol=1e-5, msg=name)


def test_execution_settings_are_checked():
    with pytest.raises(ValueError, match="multiple of accumulate 3"):
        TrainConfig(batch_size=16, accumulate=3)
    with pytest.raises(ValueError, match="accumulate must be a whole number >= 1"):
        VAETrainConfig(accumulate=0)
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        TrainConfig(precision="fp8")


def test_bfloat16_autocast_trains_float32_weights_close_to_float32(plain, tmp_path):
    run = train(tiny_train_config(steps=3, precision="bf16"), tmp_path, device="cpu", progress=False)
    assert all(p.dtype == torch.float32 for p in run.model.parameters())  # the weights the optimizer updates
    torch.testing.assert_close(torch.tensor(run.losses), torch.tensor(plain.losses), rtol=2e-2, atol=0)
    assert run.losses != plain.losses  # the forward pass really ran in bfloat16
    model, _ = load_model(tmp_path)
    assert next(model.parameters()).dtype == torch.float32


def test_float16_with_a_gradient_scaler_resumes_exactly(tmp_path):
    whole = train(tiny_train_config(steps=4, precision="fp16"), tmp_path / "whole", device="cpu", progress=False)
    train(tiny_train_config(steps=2, precision="fp16"), tmp_path / "split", device="cpu", progress=False)
    saved = load_training_state(tmp_path / "split" / "train_state").grad_scaler
    assert saved["scale"] > 1 and saved["_growth_tracker"] == 2  # the loss scale and its two good steps
    resumed = train(tiny_train_config(steps=4, precision="fp16"), tmp_path / "split", resume=True, device="cpu",
                    progress=False)
    assert resumed.losses == whole.losses and resumed.scaler.state_dict() == whole.scaler.state_dict()
    assert_same_weights(whole.model, resumed.model, atol=0)


def test_channels_last_weights_train_as_the_standard_ones_and_save(plain, tmp_path):
    run = train(tiny_train_config(steps=3, channels_last=True), tmp_path, device="cpu", progress=False)
    assert run.model.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(torch.tensor(run.losses), torch.tensor(plain.losses), rtol=0, atol=1e-5)
    assert_same_weights(plain.model, run.model, atol=1e-5)
    model, _ = load_model(tmp_path)  # saved in the standard order, as safetensors wants
    assert_same_weights(run.ema, model, atol=0)


def test_compile_runs_the_same_steps(plain, tmp_path, monkeypatch):
    """torch.compile with its eager backend: the network is captured as graphs (TorchDynamo) and run by plain
    PyTorch. The default backend (Inductor) would generate C++ and take minutes on a small CPU; what the run does
    with the compiled module is the same."""
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    run = train(tiny_train_config(steps=2, compile=True), tmp_path, device="cpu", progress=False)
    assert isinstance(run.forward_model, torch._dynamo.eval_frame.OptimizedModule)
    torch.testing.assert_close(torch.tensor(run.losses), torch.tensor(plain.losses[:2]), rtol=0, atol=1e-6)


def test_the_command_line_sets_and_records_how_steps_are_computed(tmp_path):
    out = str(tmp_path / "run")
    main(["train", "--config", "tiny", "--out", out, "--steps", "2", "--device", "cpu", "--quiet",
          "--accumulate", "2", "--precision", "bf16", "--channels-last"])
    main(["train", "--out", out, "--steps", "3", "--resume", "--device", "cpu", "--quiet", "--precision", "fp32"])
    state = load_training_state(tmp_path / "run" / "train_state")
    assert state.step == 3 and state.config["accumulate"] == 2 and state.config["channels_last"]
    assert state.config["precision"] == "fp32"  # how steps are computed may change when a run resumes
    first, second = state.command.split("\n")
    assert first.endswith("--accumulate 2 --precision bf16 --channels-last") and second.endswith("--precision fp32")
    with pytest.raises(SystemExit, match="multiple of accumulate 3"):
        main(["train", "--out", out, "--steps", "4", "--resume", "--device", "cpu", "--quiet", "--accumulate", "3"])


def test_the_precision_benchmark_times_each_variant_of_the_same_run(tmp_path):
    """benchmarks/bench_precision.py on the CPU: every variant of the same seeded run is timed and recorded; the
    channels-last variant computes the same steps (its loss agrees), bf16 rounds differently but trains the same
    run; a variant that is not PRECISION[+cl][+compile] is refused, naming the argument."""
    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "precision.json"
    command = [sys.executable, str(root / "benchmarks" / "bench_precision.py"), "--config", "tiny", "--variants",
               "fp32", "fp32+cl", "bf16", "--steps", "2", "--warmup", "1", "--batch-size", "8", "--threads", "1",
               "--device", "cpu", "--out", str(out)]
    subprocess.run(command, check=True, cwd=root, capture_output=True, env={**os.environ, "PYTHONPATH": str(root)})
    results = json.loads(out.read_text())
    run = results["runs"]["tiny"]
    assert run["batch_size"] == 8 and results["steps"] == 2 and results["device"]
    assert all(run[v]["images_per_s"] > 0 and run[v]["peak_memory_mib"] is None for v in ("fp32", "fp32+cl", "bf16"))
    assert run["fp32+cl"]["mean_loss"] == pytest.approx(run["fp32"]["mean_loss"], abs=1e-4)
    assert run["bf16"]["mean_loss"] == pytest.approx(run["fp32"]["mean_loss"], rel=0.05)
    bad = subprocess.run([*command[:5], "fp32+fast"], cwd=root, capture_output=True, text=True)
    assert bad.returncode == 2 and "--variants" in bad.stderr and "fp32+fast" in bad.stderr
