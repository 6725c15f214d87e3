"""Timesteps: the spacings (linspace, leading, trailing) against diffusers' DDIMScheduler, and Karras sigmas with the
fractional timesteps they fall on."""

import math

import numpy as np
import pytest

from minidiff.diffusion.schedule import alpha_bar_at, make_schedule, sigma_from_alpha_bar
from minidiff.diffusion.timesteps import (
    SPACINGS,
    karras_sigmas,
    karras_timesteps,
    sampling_timesteps,
    timestep_from_sigma,
)


def test_sampling_timesteps_are_evenly_spaced_and_run_from_T_minus_1_to_0():
    assert sampling_timesteps(10) == list(range(9, -1, -1))
    assert sampling_timesteps(1000, 1) == [999]
    assert sampling_timesteps(1000, 4) == [999, 666, 333, 0]
    for steps in [2, 7, 50, 999, 1000]:
        timesteps = sampling_timesteps(1000, steps)
        assert len(timesteps) == steps and timesteps[0] == 999 and timesteps[-1] == 0
        gaps = np.diff(timesteps)
        assert (gaps < 0).all() and gaps.max() - gaps.min() <= 1  # strictly falling, even up to rounding
    for bad in [0, 1001]:
        with pytest.raises(ValueError, match="steps must be a whole number in 1"):
            sampling_timesteps(1000, bad)



def test_spacings_match_diffusers_ddim_scheduler():
    """Lin et al. 2023, Table 2, as diffusers' DDIMScheduler lays them out.

    trailing is compared where steps divides T: diffusers builds it with np.arange and a fractional stride, which
    for other step counts can round a timestep the other way or even return one timestep too many (T = 50 and
    29 steps gives 30); ours computes each timestep directly. linspace with one step is ours alone: T-1 (pure
    noise), where diffusers would give 0.
    """
    from diffusers import DDIMScheduler

    for T in [50, 1000]:
        scheduler = DDIMScheduler(num_train_timesteps=T, beta_schedule="linear")
        for steps in range(2, T + 1):
            for spacing in SPACINGS:
                if spacing == "trailing" and T % steps != 0:
                    continue
                scheduler.register_to_config(timestep_spacing=spacing)
                scheduler.set_timesteps(steps)
                assert sampling_timesteps(T, steps, spacing) == scheduler.timesteps.tolist(), (T, steps, spacing)


@pytest.mark.parametrize("T", [50, 1000])
@pytest.mark.filterwarnings("ignore:one step with leading spacing")  # expected at steps = 1: tests/test_bad_inputs.py
def test_spacings_fall_evenly_and_have_their_ends(T):
    for steps in range(1, T + 1):
        linspace, leading, trailing = (sampling_timesteps(T, steps, spacing) for spacing in SPACINGS)
        for timesteps in [linspace, leading, trailing]:
            gaps = np.diff(timesteps)
            assert len(timesteps) == steps and (gaps < 0).all() and (steps == 1 or gaps.max() - gaps.min() <= 1)
        assert linspace[0] == T - 1 and linspace[-1] == (0 if steps > 1 else T - 1)
        assert leading[-1] == 0 and leading[0] == (steps - 1) * (T // steps)  # starts below T-1 unless steps = 1 or T
        assert trailing[0] == T - 1 and trailing[-1] == round(T / steps) - 1  # starts at pure noise
    with pytest.raises(ValueError, match="unknown spacing 'even'"):
        sampling_timesteps(T, 10, "even")


def test_karras_sigmas_are_even_in_sigma_to_the_one_over_rho_and_fractional_timesteps_invert():
    sigmas = karras_sigmas(80.0, 0.002, 12, rho=7.0)  # EDM's own range
    assert sigmas[0] == pytest.approx(80.0) and sigmas[-1] == pytest.approx(0.002)
    roots = np.array(sigmas) ** (1 / 7)
    np.testing.assert_allclose(np.diff(roots), np.diff(roots)[0], rtol=1e-9)  # eq. 5: a straight line in sigma^(1/rho)
    schedule = make_schedule("linear", 1000)
    for t in [0, 1, 17, 500, 998, 999]:  # integer timesteps: the table's own sigma
        assert timestep_from_sigma(schedule, sigma_from_alpha_bar(float(schedule.alpha_bar[t]))) == pytest.approx(t)
    for t in [0.25, 17.5, 800.9, 998.01]:  # in between: alpha_bar_at and timestep_from_sigma undo each other
        assert timestep_from_sigma(schedule, sigma_from_alpha_bar(alpha_bar_at(schedule, t))) == pytest.approx(t)
        below, above = float(schedule.alpha_bar[math.ceil(t)]), float(schedule.alpha_bar[math.floor(t)])
        assert below < alpha_bar_at(schedule, t) < above
    timesteps = karras_timesteps(schedule, sampling_timesteps(1000, 10, "trailing"))
    assert timesteps[0] == pytest.approx(999) and timesteps[-1] == pytest.approx(99)  # the spacing's range
    with pytest.raises(ValueError, match="zero terminal SNR"):
        karras_timesteps(make_schedule("linear", 100, zero_terminal_snr=True), sampling_timesteps(100, 5))
