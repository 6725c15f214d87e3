"""Chapter 06's "along the way" columns: each one shows the picture clearer than the last, none repeats."""

import numpy as np
import torch

from minidiff.diffusion.loop import DenoisingStep
from minidiff.diffusion.schedule import make_schedule
from minidiff.diffusion.timesteps import karras_timesteps, sampling_timesteps
from minidiff.views import race_figures


def path_through(timesteps: list[float]) -> list[DenoisingStep]:
    image = torch.zeros(1, 1, 4, 4)
    return [DenoisingStep(i, t, -1, image, image, image, image, i + 1) for i, t in enumerate(timesteps)]


def test_columns_climb_evenly_in_signal_where_steps_crowd_the_noise():
    schedule = make_schedule("cosine", 1000)
    karras = karras_timesteps(schedule, sampling_timesteps(1000, 50))  # Euler's 50 steps: crowded at t near 999
    evenly_by_index = [round(karras[i]) for i in np.linspace(0, 49, 7).round().astype(int)]
    assert len(set(evenly_by_index)) < 7 or evenly_by_index[1] > 990  # what the old columns showed: noise, twice
    picked = race_figures.telling_steps(path_through(karras), schedule, 7)
    assert picked[0] == 0 and picked[-1] == 49 and len(picked) == 7
    shares = [race_figures.signal_share(schedule, karras[i]) for i in picked]
    assert np.all(np.diff(shares) > 0.1), shares  # every column clearer than the one before
    assert sum(share < 0.1 for share in shares) == 1  # one column of (near) pure noise: the start
    # signal share by the formula, float64: sqrt(alpha_bar) of the table at integer t
    assert race_figures.signal_share(schedule, 500) == float(schedule.alpha_bar[500]) ** 0.5


def test_a_short_path_shows_each_step_once():
    schedule = make_schedule("cosine", 1000)
    karras = karras_timesteps(schedule, sampling_timesteps(1000, 5))  # Euler's and Heun's five steps
    assert race_figures.telling_steps(path_through(karras), schedule, 7) == [0, 1, 2, 3, 4]
