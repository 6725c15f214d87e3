"""The sampler race: cells measured once and resumed, the same starting noise for every sampler, honest tables.

A small untrained U-Net stands in for the shipped model: the race's bookkeeping does not depend on sample quality.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from support.tiny import tiny_unet_config

from minidiff.measure import race
from minidiff.measure.digits import balanced_labels
from minidiff.models import CheckpointInfo, load_model, save_checkpoint
from minidiff.nets.unet import UNet
from minidiff.views import race_figures

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_model_path(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    config = tiny_unet_config(in_channels=1, num_classes=10)
    info = CheckpointInfo(model=config.to_dict(), diffusion={"schedule": "cosine", "T": 100,
                                                             "zero_terminal_snr": False, "prediction": "eps"},
                          data={"name": "mnist5k", "image_shape": [1, 28, 28]}, command="untrained, for tests",
                          seed=0, device="cpu", training_minutes=0.0, step=0)
    stem = tmp_path_factory.mktemp("model") / "model"
    save_checkpoint(stem, UNet(config).state_dict(), info)
    return stem


def settings_for(model_path: Path, n: int = 10, **changes) -> dict:
    settings = {"model": str(model_path), "model_sha256": race.model_sha256(model_path), "n": n, "seed": 0,
                "guidance": None, "batch_size": 250, "threads": 1}
    return {**settings, **changes}


def synthetic_cell(sampler: str, steps: int, nfe: int, seconds: float, frechet: float) -> dict:
    return {"sampler": sampler, "steps": steps, "nfe": nfe, "seconds": seconds, "seconds_per_image": seconds / 10,
            "cpu_seconds": seconds, "class_accuracy": 0.5, "frechet_distance": frechet}


def test_a_race_measures_each_cell_once_and_resumes(tiny_model_path):
    model, info = load_model(tiny_model_path)
    results = race.new_results(settings_for(tiny_model_path))
    finished = []
    race.run_race(model, info, results, ["ddim"], [2], on_cell=lambda results, cell: finished.append(cell))
    first = results["cells"][0]
    assert (first["sampler"], first["steps"], first["nfe"]) == ("ddim", 2, 2)
    assert 0 <= first["class_accuracy"] <= 1 and first["frechet_distance"] > 0 and first["seconds"] > 0

    race.run_race(model, info, results, ["ddim", "heun"], [2, 3], on_cell=lambda results, cell: finished.append(cell))
    assert [(c["sampler"], c["steps"]) for c in finished] == [("ddim", 2), ("heun", 2), ("ddim", 3), ("heun", 3)]
    assert results["cells"][0] is first  # measured once, kept as it was
    assert race.find_cell(results, "heun", 3)["nfe"] == 2 * 3 - 1  # Heun: two evaluations per step but the last


def test_resuming_refuses_settings_that_change_the_samples(tiny_model_path):
    results = race.new_results(settings_for(tiny_model_path))
    race.check_resumable(results, settings_for(tiny_model_path, threads=2))  # timing only: allowed
    for change in ({"n": 20}, {"seed": 1}, {"guidance": 3.0}, {"model_sha256": "0" * 64}):
        with pytest.raises(ValueError, match=next(iter(change))):
            race.check_resumable(results, settings_for(tiny_model_path, **change))


def test_merging_adds_only_missing_cells_and_refuses_other_settings(tiny_model_path):
    settings = settings_for(tiny_model_path)
    results = {"settings": settings, "cells": [synthetic_cell("ddpm", 1000, 1000, 400.0, 10.0)]}
    other = {"settings": {**settings, "threads": 2},  # timing only: may be merged
             "cells": [synthetic_cell("ddpm", 1000, 1000, 999.0, 99.0), synthetic_cell("dpm++", 20, 20, 8.0, 10.5)]}
    assert race.merge_results(results, other) == 1
    assert [(c["sampler"], c["steps"], c["seconds"]) for c in results["cells"]] == [("ddpm", 1000, 400.0),
                                                                                   ("dpm++", 20, 8.0)]
    assert race.merge_results(results, other) == 0  # merging twice changes nothing
    with pytest.raises(ValueError, match="seed"):
        race.merge_results(results, {"settings": {**settings, "seed": 1}, "cells": [synthetic_cell("ddim", 5, 5, 1, 1)]})
    with pytest.raises(ValueError, match="devices"):
        race.merge_results(results, {"settings": {**settings, "device": "cuda"}, "cells": []})
    assert len(results["cells"]) == 2


def test_every_sampler_starts_from_the_same_noise(tiny_model_path):
    model, info = load_model(tiny_model_path)
    paths = race.sampler_paths(model, info, balanced_labels(3), steps=4, seed=5)
    assert list(paths) == list(race.RACE_SAMPLERS)
    x_T = paths["ddpm"][0].x_t
    expected = torch.randn(x_T.shape, generator=torch.Generator().manual_seed(5))  # what seed 5 draws first
    for name, trajectory in paths.items():
        assert torch.equal(trajectory[0].x_t, expected), f"{name} did not start from the seed's noise"
        assert len(trajectory) == 4 and trajectory[-1].nfe == (7 if name == "heun" else 4)
    figure = race_figures.paths_frame(paths, "dpm++", info.noise_schedule())
    assert "dpm++, 4 steps: 4 network evaluations" in figure._suptitle.get_text()


def test_results_survive_a_round_trip_and_a_missing_file_is_none(tmp_path):
    results = {"settings": {"n": 10, "seed": 0}, "real_vs_real_frechet_distance": 3.5,
               "cells": [synthetic_cell("ddim", 5, 5, 1.0, 40.0)]}
    path = tmp_path / "results" / "race.json"
    assert race.load_results(path) is None
    race.save_results(path, results)
    assert race.load_results(path) == results
    assert [p.name for p in path.parent.iterdir()] == ["race.json"]  # no temporary file left behind


def test_table_rows_follow_the_sampler_order_then_the_steps():
    cells = [synthetic_cell("heun", 5, 9, 2.0, 30.0), synthetic_cell("ddpm", 10, 10, 2.0, 50.0),
             synthetic_cell("ddpm", 5, 5, 1.0, 80.0), synthetic_cell("dpm++", 5, 5, 1.0, 35.25)]
    table = race.results_table({"settings": {}, "real_vs_real_frechet_distance": 3.5, "cells": cells})
    rows = [line.split("|")[1:-1] for line in table.splitlines()[2:]]
    assert [(r[0].strip(), int(r[1])) for r in rows] == [("ddpm", 5), ("ddpm", 10), ("dpm++", 5), ("heun", 5)]
    assert rows[2][7].strip() == "35.25" and all(r[8].strip() == "3.50" for r in rows)


def test_nfe_table_sets_two_races_side_by_side_at_each_budget():
    shipped = {"cells": [synthetic_cell("ddim", 5, 5, 1.0, 40.0), synthetic_cell("ddim", 20, 20, 4.0, 12.5),
                         synthetic_cell("heun", 3, 5, 1.0, 30.0)]}
    flow = {"cells": [synthetic_cell("flow_midpoint", 2, 4, 1.0, 20.0), synthetic_cell("flow_heun", 10, 19, 4.0, 9.75),
                      synthetic_cell("flow_heun", 3, 5, 1.0, 15.0)]}
    flow["cells"][1]["class_accuracy"] = 0.987
    table = race.nfe_table([("mnist, DDIM", shipped, "ddim"), ("mnist, Heun", shipped, "heun"),
                            ("flow, midpoint", flow, "flow_midpoint"), ("flow, Heun", flow, "flow_heun")], [5, 20])
    lines = table.splitlines()
    assert lines[0] == "| NFE | mnist, DDIM | mnist, Heun | flow, midpoint | flow, Heun |"
    rows = [[entry.strip() for entry in line.split("|")[1:-1]] for line in lines[2:]]
    # Heun at 5 NFE is its 3-step cell; the midpoint method at 5 NFE its 2-step cell, which spent 4
    assert rows[0] == ["5", "40.00 / 50.0%", "30.00 / 50.0%", "20.00 / 50.0% (4 NFE)", "15.00 / 50.0%"]
    # Heun at 20 NFE takes 10 steps (19 NFE): that cell, with what it spent; a cell not run is a dash
    assert rows[1] == ["20", "12.50 / 50.0%", "–", "–", "9.75 / 98.7% (19 NFE)"]


def test_fast_against_slow_compares_frechet_and_cpu_time():
    results = {"cells": [synthetic_cell("ddpm", 1000, 1000, 400.0, 10.0), synthetic_cell("dpm++", 20, 20, 8.0, 10.5)]}
    check = race.fast_against_slow(results)
    assert check["frechet_ratio"] == pytest.approx(1.05) and check["cpu_speedup"] == pytest.approx(50.0)
    assert check["as_good_and_cheaper"]
    results["cells"][0]["seconds"] = 800.0  # a busy machine doubles the wall time: the CPU time decides
    check = race.fast_against_slow(results)
    assert check["speedup"] == pytest.approx(100.0) and check["as_good_and_cheaper"]
    results["cells"][1]["cpu_seconds"] = 12.0  # only 33x faster in CPU time
    assert not race.fast_against_slow(results)["as_good_and_cheaper"]
    results["cells"][1]["cpu_seconds"] = 8.0
    results["cells"][1]["frechet_distance"] = 11.5  # 15% worse
    assert not race.fast_against_slow(results)["as_good_and_cheaper"]
    assert race.fast_against_slow({"cells": results["cells"][:1]}) is None


def test_fast_against_slow_holds_the_sde_solver_to_the_same_bar():
    results = {"cells": [synthetic_cell("ddpm", 1000, 1000, 400.0, 10.0), synthetic_cell("dpm++", 20, 20, 8.0, 15.0),
                         synthetic_cell("dpm++sde", 20, 20, 8.0, 10.8)]}
    assert ("dpm++sde", 20) in race.FAST_CELLS and race.RACE_SAMPLERS.index("dpm++sde") == 3  # after dpm++
    assert not race.fast_against_slow(results)["as_good_and_cheaper"]  # the default fast cell is still the ODE solver's
    check = race.fast_against_slow(results, fast=("dpm++sde", 20))
    assert check["fast"] == ("dpm++sde", 20) and check["frechet_ratio"] == pytest.approx(1.08)
    assert check["as_good_and_cheaper"]


def test_command_line_writes_json_and_png_and_skips_measured_cells(tiny_model_path, tmp_path):
    out = tmp_path / "race.json"
    command = [sys.executable, str(REPO / "benchmarks" / "sampler_race.py"), "--model", str(tiny_model_path),
               "--n", "10", "--samplers", "ddim", "dpm++", "--steps", "2", "--out", str(out)]
    first = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert "| ddim | 2 | 2 |" in first and "| dpm++ | 2 | 2 |" in first
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    measured = json.loads(out.read_text())["cells"]

    again = subprocess.run(command[:-3] + ["2", "3", "--out", str(out)], capture_output=True, text=True, cwd=REPO,
                           check=True).stdout
    assert "2 cells already measured" in again
    cells = json.loads(out.read_text())["cells"]
    assert cells[:2] == measured and [(c["sampler"], c["steps"]) for c in cells[2:]] == [("ddim", 3), ("dpm++", 3)]

    other = tmp_path / "other.json"  # a second race run in parallel, then merged into the first
    subprocess.run(command[:-6] + ["ddpm", "--steps", "2", "--out", str(other)], cwd=REPO, check=True,
                   capture_output=True)
    merged = subprocess.run(command[:-2] + ["--out", str(out), "--merge", str(other)], capture_output=True, text=True,
                            cwd=REPO, check=True).stdout
    assert f"merged {other}: 1 new cells" in merged and "| ddpm | 2 | 2 |" in merged
    assert json.loads(out.read_text())["cells"][:4] == cells and len(json.loads(out.read_text())["cells"]) == 5

    refused = subprocess.run(command[:5] + ["20"] + command[6:], capture_output=True, text=True, cwd=REPO)
    assert refused.returncode != 0 and "measured with n = 10, not 20" in refused.stderr


# ------------------------------------------------------------------ a rectified-flow model's race


@pytest.fixture(scope="module")
def tiny_flow_model_path(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    config = tiny_unet_config(in_channels=1, num_classes=10, time_scale=1000.0)
    info = CheckpointInfo(model=config.to_dict(), diffusion={"schedule": "cosine", "T": 1000,
                                                             "zero_terminal_snr": False, "prediction": "flow",
                                                             "time_sampling": "logit_normal"},
                          data={"name": "mnist5k", "image_shape": [1, 28, 28]}, command="untrained, for tests",
                          seed=0, device="cpu", training_minutes=0.0, step=0)
    stem = tmp_path_factory.mktemp("flow_model") / "model"
    save_checkpoint(stem, UNet(config).state_dict(), info)
    return stem


@pytest.mark.parametrize("sampler, nfe, steps", [
    ("ddpm", 5, 5), ("flow_euler", 20, 20), ("heun", 5, 3), ("flow_heun", 10, 5), ("flow_heun", 1, 1),
    ("flow_midpoint", 5, 2), ("flow_midpoint", 20, 10), ("flow_midpoint", 1, 1),
])
def test_steps_for_nfe_fits_the_most_steps_into_the_budget(sampler, nfe, steps):
    assert race.steps_for_nfe(sampler, nfe) == steps


def test_a_flow_model_races_its_samplers_by_network_evaluations(tiny_flow_model_path):
    model, info = load_model(tiny_flow_model_path)
    results = race.new_results(settings_for(tiny_flow_model_path, n=10))
    race.run_race(model, info, results, race.FLOW_RACE_SAMPLERS, [4, 5], by_nfe=True)
    measured = {(cell["sampler"], cell["steps"]): cell["nfe"] for cell in results["cells"]}
    # the NFE each cell really spent, counted by the loop: within the budget, and the most that fits
    assert measured == {("flow_euler", 4): 4, ("flow_midpoint", 2): 4, ("flow_heun", 2): 3,
                        ("flow_euler", 5): 5, ("flow_heun", 3): 5}  # flow_midpoint at 5 NFE is its 4-NFE cell
    assert all(0 <= cell["class_accuracy"] <= 1 and cell["frechet_distance"] > 0 for cell in results["cells"])
    assert [row.split("|")[1].strip() for row in race.results_table(results).splitlines()[2:]] == [
        "flow_euler", "flow_euler", "flow_midpoint", "flow_heun", "flow_heun"]


def test_the_command_line_races_a_flow_model(tiny_flow_model_path, tmp_path):
    out = tmp_path / "flow_race.json"
    command = [sys.executable, str(REPO / "benchmarks" / "sampler_race.py"), "--model", str(tiny_flow_model_path),
               "--n", "10", "--nfe", "2", "--out", str(out)]
    printed = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert "| flow_euler | 2 | 2 |" in printed and "| flow_midpoint | 1 | 2 |" in printed
    assert "| flow_heun | 1 | 1 |" in printed
    refused = subprocess.run(command + ["--samplers", "ddim"], capture_output=True, text=True, cwd=REPO)
    assert refused.returncode != 0 and "--samplers ddim do not fit" in refused.stderr
