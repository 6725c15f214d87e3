r"""The sampler race: one model, one set of seeds, six samplers at many step counts; quality against cost.

Each cell of the race samples the same n digits (labels cycling 0 ... 9, batches seeded seed, seed + 1, ...,
so every sampler starts from the same x_T) with one sampler at one number of steps, and records
- the cost: NFE (network evaluations per image), wall-clock seconds and the CPU seconds of this process;
- the quality (`minidiff.measure.digits.digit_quality`): the digit classifier's class accuracy and the Fréchet
  distance in its features, beside the real-vs-real baseline at the same n: two sets of real digits compared with
  each other, a reference for the distance's small-sample bias (a sampler can land on either side of it).

Results are a plain dict, {"settings", "real_vs_real_frechet_distance", "cells"}, saved as JSON, so a race that
takes hours can stop and resume: `run_race` skips every cell already measured. benchmarks/sampler_race.py is its
command line. `sampler_paths` records every sampler's steps from the same seed; chapter 06 draws the results and
those paths with `minidiff.views.race_figures`.

A rectified-flow model races with the flow samplers (`FLOW_RACE_SAMPLERS`) the same way; `steps_for_nfe` turns
a budget of network evaluations into each sampler's number of steps, so that samplers of one and two evaluations per
step can be compared at 5, 10, 20 or 50 NFE; `nfe_table` sets the cells of two races (a rectified-flow model's and
the shipped model's) side by side at each budget.

Papers followed: the samplers' own (see `minidiff.diffusion.samplers`); Karras et al. 2022, sec. 3, for NFE as the
honest measure of a sampler's cost; Heusel et al. 2017, eq. 6, for the Fréchet distance.
"""

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from minidiff.diffusion.loop import DenoisingStep, model_denoiser
from minidiff.diffusion.samplers import FLOW_SAMPLERS, SAMPLERS, sample
from minidiff.files.atomic import atomic_write_bytes
from minidiff.files.checkpoint import checkpoint_stem
from minidiff.measure.digits import balanced_labels, digit_quality, generate_digits
from minidiff.measure.metrics import real_vs_real_baseline

RACE_SAMPLERS = ("ddpm", "ddim", "dpm++", "dpm++sde", "euler", "heun")  # the order of every table and legend
FLOW_RACE_SAMPLERS = ("flow_euler", "flow_midpoint", "flow_heun")  # a rectified-flow model's, after those
RACE_STEPS = (5, 10, 20, 50, 100, 1000)
# network evaluations per step: 1, except Heun's 2 (but 1 on the last step) and the midpoint method's 2
TWO_EVALUATIONS = {"heun": 1, "flow_heun": 1, "flow_midpoint": 0}  # sampler -> evaluations saved on the last step


def steps_for_nfe(sampler: str, nfe: int) -> int:
    """The most steps `sampler` can take within `nfe` network evaluations per image (at least 1): nfe for the
    samplers of one evaluation per step, (nfe + 1) // 2 for Heun's (2 * steps - 1), nfe // 2 for the midpoint
    method's (2 * steps)."""
    if sampler not in SAMPLERS and sampler not in FLOW_SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {sorted(SAMPLERS) + sorted(FLOW_SAMPLERS)}")
    if sampler not in TWO_EVALUATIONS:
        return max(1, nfe)
    return max(1, (nfe + TWO_EVALUATIONS[sampler]) // 2)


# the fast cells `fast_against_slow` compares with DDPM at 1000 steps: the ODE solver at 20 steps, and its SDE variant
FAST_CELLS = (("dpm++", 20), ("dpm++sde", 20))

# settings that change the samples or their measurement: a file measured with others cannot be resumed
COMPARABLE = ("model_sha256", "n", "seed", "guidance", "batch_size")


def model_sha256(model_name: str) -> str:
    """The sha256 of a checkpoint's weights, as its JSON records it: which model a race measured."""
    return json.loads(Path(f"{checkpoint_stem(model_name)}.json").read_text())["tensors_sha256"]


def new_results(settings: dict) -> dict:
    """An empty race for these settings (at least n and seed), with the real-vs-real baseline at that n."""
    return {"settings": settings,
            "real_vs_real_frechet_distance": real_vs_real_baseline(settings["n"], seed=settings["seed"]),
            "cells": []}


def check_resumable(results: dict, settings: dict) -> None:
    """Raise ValueError if `results` were measured with settings that would change the samples or the metrics."""
    for key in COMPARABLE:
        if results["settings"].get(key) != settings.get(key):
            raise ValueError(f"the results were measured with {key} = {results['settings'].get(key)!r}, not "
                             f"{settings.get(key)!r}; give another output file, or the same settings, to resume")


def find_cell(results: dict, sampler: str, steps: int) -> dict | None:
    """The measured cell for this sampler and step count, or None if it has not run yet."""
    return next((cell for cell in results["cells"] if (cell["sampler"], cell["steps"]) == (sampler, steps)), None)


def race_cell(model, info, sampler: str, steps: int, labels: torch.Tensor, seed: int = 0,
              guidance: float | None = None, batch_size: int = 250, device: torch.device | str = "cpu",
              clip_x0: bool | None = None) -> dict:
    """Sample one digit per label with `sampler` at `steps` steps, and measure what it cost and how good it is.

    clip_x0: None, the sampler's default: x0 clipped to [-1, 1] at every step for the VP samplers (so their ODE
    samplers solve a clipped ODE), not for the flow samplers; the race runs with it, and chapter 06 shows cells
    with clip_x0 False."""
    cpu_start = time.process_time()
    images, cost = generate_digits(model, info, labels, sampler, steps, guidance, seed, batch_size, device, clip_x0)
    cpu_seconds = time.process_time() - cpu_start
    return {"sampler": sampler, "steps": steps, "nfe": cost["nfe"], "seconds": cost["seconds"],
            "seconds_per_image": cost["seconds"] / len(labels), "cpu_seconds": cpu_seconds,
            **digit_quality(images, labels, seed)}


def run_race(model, info, results: dict, samplers: Sequence[str] = RACE_SAMPLERS,
             step_counts: Sequence[int] = RACE_STEPS, device: torch.device | str = "cpu",
             on_cell: Callable[[dict, dict], None] | None = None, by_nfe: bool = False) -> dict:
    """Measure every (sampler, steps) cell not yet in `results`, cheapest step counts first; returns `results`.
    With by_nfe, step_counts are budgets of network evaluations per image, each turned into the sampler's own
    number of steps (`steps_for_nfe`).

    Cells are added to results["cells"] as they finish, and on_cell(results, cell) is called after each one
    (to save and print), so an interrupted race loses at most the cell it was running.
    """
    unknown = [name for name in samplers if name not in SAMPLERS and name not in FLOW_SAMPLERS]
    if unknown:
        raise ValueError(f"unknown samplers {unknown}; choose from {sorted(SAMPLERS) + sorted(FLOW_SAMPLERS)}")
    settings = results["settings"]
    labels = balanced_labels(settings["n"])
    for count in sorted(step_counts):
        for sampler in samplers:
            steps = steps_for_nfe(sampler, count) if by_nfe else count
            if find_cell(results, sampler, steps) is not None:
                continue
            cell = race_cell(model, info, sampler, steps, labels, settings["seed"], settings.get("guidance"),
                             settings.get("batch_size", 250), device)
            results["cells"].append(cell)
            if on_cell is not None:
                on_cell(results, cell)
    return results


def merge_results(results: dict, other: dict) -> int:
    """Add the cells of `other` that `results` lacks (a race run in parallel, with the same settings); returns
    how many were added. Raises ValueError if `other` was measured with settings that change the samples."""
    check_resumable(results, other["settings"])
    devices = results["settings"].get("device", "cpu"), other["settings"].get("device", "cpu")
    if devices[0] != devices[1]:
        raise ValueError(f"the races ran on different devices ({devices[0]} and {devices[1]}): their seconds "
                         "cannot share a table")
    added = [cell for cell in other["cells"] if find_cell(results, cell["sampler"], cell["steps"]) is None]
    results["cells"].extend(added)
    return len(added)


def load_results(path: Path | str) -> dict | None:
    """A race saved by `save_results`, or None if there is no file at path."""
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else None


def save_results(path: Path | str, results: dict) -> None:
    """Write the race as JSON, atomically: a reader sees the previous file or this one, never half of one."""
    atomic_write_bytes(path, (json.dumps(results, indent=1) + "\n").encode())


def ordered_cells(results: dict) -> list[dict]:
    """The cells sorted by sampler (in RACE_SAMPLERS order, others after) and then by steps."""
    rank = {name: index for index, name in enumerate(RACE_SAMPLERS + FLOW_RACE_SAMPLERS)}
    return sorted(results["cells"], key=lambda cell: (rank.get(cell["sampler"], len(rank)), cell["sampler"],
                                                      cell["steps"]))


def results_table(results: dict) -> str:
    """The race as a Markdown table, one row per cell, with the real-vs-real baseline at the race's n."""
    baseline = results["real_vs_real_frechet_distance"]
    rows = ["| sampler | steps | NFE | seconds | seconds / image | CPU seconds | accuracy | Fréchet | real vs real |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for cell in ordered_cells(results):
        rows.append(f"| {cell['sampler']} | {cell['steps']} | {cell['nfe']} | {cell['seconds']:.1f} | "
                    f"{cell['seconds_per_image']:.4f} | {cell['cpu_seconds']:.1f} | {cell['class_accuracy']:.3f} | "
                    f"{cell['frechet_distance']:.2f} | {baseline:.2f} |")
    return "\n".join(rows)


def nfe_table(columns: Sequence[tuple[str, dict, str]], budgets: Sequence[int]) -> str:
    """Races side by side at equal cost, as a Markdown table: a row per budget of network evaluations per image, a
    column per (title, results, sampler), e.g. ("mnist, DDIM", shipped_race, "ddim"). Each entry is the cell that
    the sampler races at that budget (`steps_for_nfe`): "Fréchet distance / class accuracy", with the NFE it spent
    when below the budget (the midpoint method at an odd one), or "–" if that cell has not run."""
    rows = ["| NFE | " + " | ".join(title for title, _, _ in columns) + " |", "|---:|" + "---:|" * len(columns)]
    for budget in budgets:
        entries = []
        for _, results, sampler in columns:
            cell = find_cell(results, sampler, steps_for_nfe(sampler, budget))
            if cell is None:
                entries.append("–")
                continue
            spent = "" if cell["nfe"] == budget else f" ({cell['nfe']} NFE)"
            entries.append(f"{cell['frechet_distance']:.2f} / {cell['class_accuracy']:.1%}{spent}")
        rows.append(f"| {budget} | " + " | ".join(entries) + " |")
    return "\n".join(rows)


def fast_against_slow(results: dict, fast: tuple[str, int] = ("dpm++", 20),
                      reference: tuple[str, int] = ("ddpm", 1000)) -> dict | None:
    """How a fast cell compares with the slow reference: Fréchet ratio (fast / reference) and speed-ups.

    Two speed-ups: in wall-clock seconds, and in this process's CPU seconds. On an idle machine with one thread
    they agree; on a shared machine wall time also counts the other jobs, so the speed is judged on CPU time.

    What it measures is the promise of a fast solver (Lu et al. 2022b): samples as good as DDPM's thousand steps
    from about twenty. "as_good_and_cheaper" is True when the fast cell's Fréchet distance is within 10% of the
    reference's (ratio <= 1.1) at a 40th of its CPU time or less. None until both cells have run. On the shipped
    MNIST model the ODE solvers converge to worse samples than DDPM's, so the comparison is also worth making for
    SDE-DPM-Solver++: fast = ("dpm++sde", 20) (both are in FAST_CELLS).
    """
    fast_cell, reference_cell = find_cell(results, *fast), find_cell(results, *reference)
    if fast_cell is None or reference_cell is None:
        return None
    frechet_ratio = fast_cell["frechet_distance"] / reference_cell["frechet_distance"]
    speedup = reference_cell["seconds"] / fast_cell["seconds"]
    cpu_speedup = reference_cell["cpu_seconds"] / fast_cell["cpu_seconds"]
    return {"fast": fast, "reference": reference, "frechet_ratio": frechet_ratio, "speedup": speedup,
            "cpu_speedup": cpu_speedup, "as_good_and_cheaper": frechet_ratio <= 1.1 and cpu_speedup >= 40}


def sampler_paths(model, info, labels: torch.Tensor, steps: int, seed: int = 0,
                  samplers: Sequence[str] = RACE_SAMPLERS,
                  device: torch.device | str = "cpu") -> dict[str, list[DenoisingStep]]:
    """Every sampler's recorded steps for the same digits (labels (B,)) from the same seed, so the same x_T."""
    schedule, prediction = info.noise_schedule(), info.diffusion["prediction"]
    shape = (len(labels), *info.data["image_shape"])
    denoiser = model_denoiser(model, class_labels=labels.to(device))
    paths = {}
    for sampler in samplers:
        recorded: list[DenoisingStep] = []
        generator = torch.Generator().manual_seed(seed)  # on the CPU: the same x_T on any device
        sample(sampler, denoiser, shape, schedule, prediction, steps=steps, generator=generator, device=device,
               callback=recorded.append)
        paths[sampler] = recorded
    return paths
