"""A diffusion transformer trains, checkpoints and samples through the same code as the U-Net: the training loop, the
checkpoint JSON (which records the backbone; one without it holds a U-Net), load_model and the text-to-image
pipeline; benchmarks/dit_vs_unet.py measures them side by side."""

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from support.checkpoints import make_info, trained_model_and_optimizer
from support.scripts import load_script
from support.tiny import PROMPT, tiny_text_encoder

from minidiff.data.paths import CHECKPOINT_DIR
from minidiff.measure.adherence import prompt_adherence
from minidiff.models import load_model, save_checkpoint
from minidiff.nets.conditioning import ConditionedUNet
from minidiff.nets.dit import DiT, DiTConfig
from minidiff.nets.unet import UNet, UNetConfig
from minidiff.pipeline import TextToImage
from minidiff.training.config import TrainConfig
from minidiff.training.loop import train
from minidiff.training.presets import PRESETS


@pytest.fixture(scope="module")
def tiny_dit_run(tiny_vae, tmp_path_factory):
    """The tiny_dit preset with a text encoder, 12 steps on the tests' autoencoder: (run folder, finished run)."""
    folder = tmp_path_factory.mktemp("dit")
    config = PRESETS["tiny_dit"]()
    config.autoencoder, config.steps, config.encoder = str(tiny_vae), 12, tiny_text_encoder()
    return folder, train(config, folder, device="cpu", progress=False)


def test_a_dit_run_learns_and_its_checkpoint_records_the_backbone(tiny_dit_run):
    folder, run = tiny_dit_run
    assert len(run.losses) == 12 and sum(run.losses[-4:]) < sum(run.losses[:4])
    meta = json.loads((folder / "model.json").read_text())
    assert meta["backbone"] == "dit" and meta["model"] == run.config.dit.to_dict()
    model, info = load_model(folder)
    assert isinstance(model, ConditionedUNet) and isinstance(model.unet, DiT)
    assert info.network_config() == run.config.dit
    x_t, t, tokens = torch.randn(2, 4, 8, 8), torch.tensor([3, 80]), torch.ones(2, 10, dtype=torch.long)
    with torch.inference_mode():
        torch.testing.assert_close(model(x_t, t, tokens), run.ema.eval()(x_t, t, tokens), rtol=0, atol=0)


def test_the_text_to_image_pipeline_draws_with_a_dit(tiny_dit_run):
    folder, _ = tiny_dit_run
    pipe = TextToImage.load(folder)
    result = pipe(PROMPT, n=2, steps=3, guidance=3.0, seed=0)
    again = pipe(PROMPT, n=2, steps=3, guidance=3.0, seed=0, sampler="ddim")
    assert result.images.shape == (2, 3, 32, 32) and torch.isfinite(result.images).all() and result.nfe == 3
    assert again.images.shape == (2, 3, 32, 32)
    recorded = pipe(PROMPT, n=2, steps=2, guidance=3.0, seed=0, attention=True).attention
    assert len(recorded) == 2 and recorded[0].shape == (2, 10, 32, 32)  # per step: (n, tokens, 32, 32)
    torch.testing.assert_close(recorded[0].sum(dim=1), torch.ones(2, 32, 32))  # each position's weights sum to 1


def test_a_checkpoint_without_a_backbone_entry_holds_a_unet(tmp_path):
    model, _ = trained_model_and_optimizer()
    save_checkpoint(tmp_path / "model", model.state_dict(), make_info())
    meta = json.loads((tmp_path / "model.json").read_text())
    del meta["backbone"]  # as every checkpoint written before the DiT
    (tmp_path / "model.json").write_text(json.dumps(meta))
    loaded, info = load_model(tmp_path / "model")
    assert type(loaded) is UNet and info.backbone == "unet"


def test_a_class_conditional_dit_trains_on_digits_in_the_same_loop(tmp_path):
    config = PRESETS["tiny"]()
    config.unet, config.dit, config.steps = None, DiTConfig(in_channels=1, patch_size=4, dim=16, depth=1, heads=2,
                                                             num_classes=10), 4
    run = train(config, tmp_path, device="cpu", progress=False)
    model, info = load_model(tmp_path)
    assert type(model) is DiT and info.backbone == "dit" and run.step == 4
    assert (tmp_path / "samples" / "step_000004.png").exists()


def test_a_run_takes_exactly_one_network():
    with pytest.raises(ValueError, match="exactly one of unet"):
        TrainConfig(unet=UNetConfig(), dit=DiTConfig(in_channels=1))
    with pytest.raises(ValueError, match="exactly one of unet"):
        TrainConfig(unet=None)
    assert TrainConfig.from_dict(PRESETS["shapes_text_dit"]().to_dict()).network == PRESETS["shapes_text_dit"]().dit


def test_the_dit_against_unet_benchmark_measures_each_width_once_and_ships_the_best(tmp_path, monkeypatch, capsys):
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "dit_vs_unet.py"
    out, checkpoints = tmp_path / "table.json", tmp_path / "checkpoints"
    checkpoints.mkdir()
    command = [sys.executable, str(script), "--quick", "--steps", "2", "--n", "6", "--heldout-n", "3", "--quiet",
               "--runs", str(tmp_path / "runs"), "--out", str(out), "--checkpoints", str(checkpoints)]
    subprocess.run(command + ["--widths", "8"], check=True, capture_output=True)
    first = json.loads(out.read_text())["results"]
    subprocess.run(command + ["--widths", "8", "16", "--ship"], check=True, capture_output=True)
    rows = {row["name"]: row for row in json.loads(out.read_text())["results"]}
    assert list(rows) == ["unet", "dit-8", "dit-16"]
    assert rows["unet"] == first[0] and rows["dit-8"] == first[1]  # measured once, kept
    assert all(row["steps"] == 2 and row["images_seen"] == 2 * 16 for row in rows.values())
    assert rows["dit-8"]["parameters"] < rows["dit-16"]["parameters"] < rows["unet"]["parameters"]
    assert 0 < rows["dit-8"]["training_tflops"] < rows["dit-16"]["training_tflops"]
    assert all(0 <= row["adherence"]["all"] <= 1 and row["heldout_pairs"]["n"] == 3 for row in rows.values())
    best = max(("dit-8", "dit-16"), key=lambda name: rows[name]["adherence"]["all"])
    shipped = json.loads((checkpoints / "shapes_text_dit.json").read_text())
    assert shipped["metrics"]["dit_vs_unet"]["name"] == best
    assert shipped["metrics"]["dit_vs_unet_sweep"]["results"] == list(rows.values())  # the whole table it won
    trained_by = json.loads(out.read_text())["command"]
    assert "--widths 8 16" in trained_by
    subprocess.run(command + ["--widths", "8", "16", "--ship"], check=True, capture_output=True)  # nothing to train
    assert json.loads(out.read_text())["command"] == trained_by  # the command that trained the table, kept
    assert (checkpoints / "shapes_text_dit.safetensors").read_bytes() == (
        tmp_path / "runs" / best / "model.safetensors").read_bytes()
    subprocess.run(command + ["--widths", "16"], check=True, capture_output=True)  # nothing to train
    assert [row["name"] for row in json.loads(out.read_text())["results"]] == ["unet", "dit-16", "dit-8"]  # all kept
    table = out.read_text()
    subprocess.run(command + ["--widths", "8", "16", "--speed", "--repeats", "2", "--batch", "4"], check=True,
                   capture_output=True)
    assert out.read_text() == table  # the speed race leaves the table as it is
    record = json.loads((tmp_path / "table_speed.json").read_text())
    assert [trained["steps"] for trained in record["trained_by"].values()] == [2, 2, 2]
    speeds = record["speeds"]
    assert list(speeds) == ["unet", "dit-8", "dit-16"]
    unet = speeds["unet"]
    for row in speeds.values():
        assert len(row["train_seconds"]) == len(row["sample_seconds"]) == 2 and min(row["train_seconds"]) > 0
        assert row["train_images_per_second"] == round(4 / statistics.median(row["train_seconds"]), 1)
        assert row["sample_speedup_over_unet"] == round(statistics.median(
            [u / d for u, d in zip(unet["sample_seconds"], row["sample_seconds"])]), 3)
    assert unet["train_speedup_over_unet"] == unet["sample_speedup_over_unet"] == 1.0
    bench = load_script("benchmarks/dit_vs_unet.py")
    monkeypatch.setattr("sys.argv", ["dit_vs_unet.py", "--widths", "8", "--speed", "--runs", str(tmp_path / "none")])
    with pytest.raises(SystemExit) as untrained:
        bench.main()
    message = capsys.readouterr().err
    assert untrained.value.code == 2 and "have no model in" in message and "--steps" in message
    pipe = TextToImage.load(tmp_path / "runs" / "unet")
    weights = [p.detach().clone() for p in pipe.model.parameters()]
    bench.training_step(pipe, 4)()
    assert any(not torch.equal(w, p) for w, p in zip(weights, pipe.model.parameters()))  # it trained
    assert not pipe.model.training  # and left the model as the pipeline samples it: dropout off
    assert Image.open(out.with_suffix(".png")).size == (720, 432)


def test_the_shipped_dit_follows_prompts_as_its_json_records_and_fits_beside_the_flow_model():
    """The shipped DiT, the DiT-vs-U-Net benchmark's best width, drawn again on the benchmark's own prompts and
    seeds: all-four adherence within three images of the recorded figure, on training captions and held-out pairs.
    Its JSON holds the whole table (the U-Net and three widths), and with mnist_flow it weighs at most 25 MB."""
    pipe = TextToImage.load("shapes_text_dit")
    assert isinstance(pipe.model.unet, DiT)
    recorded = pipe.info.metrics["dit_vs_unet"]
    for split, key in [("train", "adherence"), ("heldout", "heldout_pairs")]:
        n = recorded[key]["n"]
        measured = prompt_adherence(pipe, n, split)
        assert abs(measured["all"] - recorded[key]["all"]) <= 3 / n, (split, measured, recorded[key])
    table = pipe.info.metrics["dit_vs_unet_sweep"]["results"]
    assert [row["name"] for row in table][0] == "unet" and len(table) == 4
    assert recorded == max(table[1:], key=lambda row: row["adherence"]["all"])
    size = sum((CHECKPOINT_DIR / f"{name}{suffix}").stat().st_size for name in ("shapes_text_dit", "mnist_flow")
               for suffix in (".safetensors", ".json"))
    assert size <= 25e6
