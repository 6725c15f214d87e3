"""img2img (SDEdit) and inpainting with every sampler: the strength as a noise level, the number of steps it runs,
the kept region, the latent mask, RePaint's resampling, and reproducibility from the generator alone. (In the
pipeline: tests/test_pipeline.py; on the command line: tests/cli/test_cli_sample.py.)"""

import pytest
import torch

from minidiff.diffusion.dpm_solver import dpm_solver_2m_step, dpm_solver_2m_update
from minidiff.diffusion.editing import Edit, latent_mask, paste_kept, renoise, repaint_path
from minidiff.diffusion.samplers import SAMPLERS
from minidiff.diffusion.schedule import alpha_bar_at, make_schedule
from minidiff.diffusion.timesteps import SPACINGS, edit_timesteps, round_half_up

SCHEDULE = make_schedule("cosine", 100)
SHAPE = (2, 3, 8, 8)


def fake_denoiser(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A fixed, smooth "v prediction" that depends on x_t and t: enough to tell the code paths apart."""
    return 0.3 * torch.tanh(x_t) + 0.01 * t.float()[:, None, None, None] / 100


def mixing_denoiser(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """fake_denoiser plus each image's mean: every pixel's prediction depends on every other pixel, as a network's
    does, so the kept region's noise reaches the regenerated one."""
    return fake_denoiser(x_t, t) + 0.5 * x_t.mean(dim=(1, 2, 3), keepdim=True)


def run(sampler: str, edit: Edit | None, steps: int = 10, seed: int = 0, denoiser=fake_denoiser):
    counted = []
    x = SAMPLERS[sampler](denoiser, SHAPE, SCHEDULE, "v", steps=steps, generator=torch.Generator().manual_seed(seed),
                          edit=edit, callback=counted.append, clip_x0=False)
    return x, (counted[-1].nfe if counted else 0)


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_strength_0_returns_the_input_and_costs_nothing(sampler):
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5))
    x, nfe = run(sampler, Edit(x0, strength=0.0))
    assert torch.equal(x, x0) and nfe == 0


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_strength_1_is_plain_sampling_because_the_start_is_almost_pure_noise(sampler):
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5))
    edited, nfe = run(sampler, Edit(x0, strength=1.0))
    plain, plain_nfe = run(sampler, None)
    assert nfe == plain_nfe
    # x_T = sqrt(alpha_bar[T-1]) x0 + sqrt(1 - alpha_bar[T-1]) eps, with alpha_bar[T-1] ~ 1e-8 for cosine, T = 100
    assert torch.allclose(edited, plain, atol=1e-2)


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_strength_runs_that_share_of_the_steps_rounded_half_up(sampler):
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5))
    # strength x steps: 0.5 x 10 = 5, 0.75 x 10 = 7.5 -> 8 (int() would give 7), 0.25 x 10 = 2.5 -> 3 (round() gives
    # 2), 0.04 x 10 = 0.4 -> 0
    for strength, steps_run in [(0.5, 5), (0.75, 8), (0.25, 3), (0.04, 0)]:
        counted = []
        SAMPLERS[sampler](fake_denoiser, SHAPE, SCHEDULE, "v", steps=10, generator=torch.Generator().manual_seed(0),
                          edit=Edit(x0, strength=strength), callback=counted.append, clip_x0=False)
        assert len(counted) == steps_run, (strength, len(counted))


def test_the_number_of_steps_is_strength_times_steps_rounded_half_up():
    """The rule docs/notation.md states, floor(strength * S + 1/2), against fractions worked out by hand."""
    assert [round_half_up(x) for x in (0.4, 0.5, 1.5, 2.5, 7.5, 7.49)] == [0, 1, 2, 3, 8, 7]
    for strength, steps, expected in [(0.1, 5, 1), (0.3, 5, 2), (0.75, 10, 8), (0.25, 10, 3), (0.65, 20, 13),
                                      (0.33, 3, 1), (0.5, 3, 2), (1.0, 7, 7), (0.0, 7, 0)]:
        for spacing in SPACINGS:
            assert len(edit_timesteps(1000, steps, spacing, strength)) == expected, (strength, steps, spacing)


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_strength_is_a_noise_level_the_first_step_starts_from_whatever_the_sampler(sampler, spacing):
    """SDEdit (Meng et al. 2022, sec. 3): strength s starts at t_0 = s T on the diffusion, not at the share s of the
    sampler's own (e.g. Karras) step list. The first step's alpha_bar is alpha_bar(s T - 1) for the spacings that
    start at their top, and within one of the edit's steps below it for leading (whose stride, T' // S', rounds
    down: 8 steps over 750 timesteps start at 7 * 93 = 651)."""
    schedule, steps = make_schedule("cosine", 1000), 10
    x0 = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(5))
    for strength in (0.3, 0.5, 0.75, 1.0):
        counted = []
        SAMPLERS[sampler](fake_denoiser, (1, 3, 4, 4), schedule, "v", steps=steps, spacing=spacing,
                          generator=torch.Generator().manual_seed(0), edit=Edit(x0, strength=strength),
                          callback=counted.append, clip_x0=False)
        first = alpha_bar_at(schedule, counted[0].t)
        t0 = strength * 1000 - 1  # 0-based: t = 999 is the whole diffusion
        asked = alpha_bar_at(schedule, t0)
        count = round_half_up(strength * steps)
        # one of the edit's steps, (t_0 + 1) / count, and for leading the n - 1 timesteps its whole stride loses
        one_step_below = alpha_bar_at(schedule, t0 - (t0 + 1) / count - (count - 1))
        if spacing == "leading":
            assert asked - 1e-9 <= first <= one_step_below, (strength, counted[0].t)
        else:
            assert first == pytest.approx(asked, rel=1e-4, abs=1e-9), (strength, counted[0].t)
        assert counted[-1].t_prev == -1 and len(counted) == round_half_up(strength * steps)


def test_the_edits_steps_cover_0_to_t0_with_the_spacings_rule():
    # strength 0.5 of T = 1000: t_0 = 499; 5 steps, laid out as each spacing lays out 5 steps of 500
    assert edit_timesteps(1000, 10, "linspace", 0.5) == [499, 374, 250, 125, 0]
    assert edit_timesteps(1000, 10, "leading", 0.5) == [400, 300, 200, 100, 0]
    assert edit_timesteps(1000, 10, "trailing", 0.5) == [499, 399, 299, 199, 99]
    assert edit_timesteps(1000, 10, "linspace", None) == list(range(999, -1, -111))
    assert edit_timesteps(1000, None, "linspace", 0.3) == list(range(299, -1, -1))  # all T steps: DDPM's default


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_inpainting_keeps_the_kept_region_exactly(sampler):
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5))
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :, 4:] = 1.0  # regenerate the right half, keep the left half
    x, _ = run(sampler, Edit(x0, strength=1.0, mask=mask, generator=torch.Generator().manual_seed(1)))
    assert torch.equal(x[..., :4], x0[..., :4])
    assert not torch.allclose(x[..., 4:], x0[..., 4:], atol=1e-2)


def test_bad_strengths_and_masks_are_refused():
    x0 = torch.zeros(SHAPE)
    with pytest.raises(ValueError, match=r"strength must be a number in \[0.0, 1.0\]"):
        Edit(x0, strength=1.5)
    with pytest.raises(ValueError, match="the mask must be"):
        Edit(x0, mask=torch.ones(1, 1, 4, 4))


def test_latent_mask_regenerates_every_cell_that_holds_a_white_pixel():
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., :8, :6] = 1.0  # regenerate the top left 8 x 6 pixels
    mask[..., 30, 17] = 1.0  # and one pixel, off the latent grid
    cell_mask = latent_mask(mask, 4)
    assert cell_mask.shape == (1, 1, 8, 8)
    by_hand = mask.reshape(1, 1, 8, 4, 8, 4).amax(dim=(3, 5))  # the largest value in each 4 x 4 cell
    assert torch.equal(cell_mask, by_hand)
    assert cell_mask[0, 0, :2, :2].eq(1).all() and cell_mask[0, 0, 7, 4] == 1 and cell_mask.sum() == 5


def test_paste_kept_takes_the_input_outside_the_mask_and_the_images_inside():
    images, inputs = torch.full((2, 3, 4, 4), 0.5), torch.full((1, 3, 4, 4), -1.0)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., 1, 2] = 1.0
    pasted = paste_kept(images, inputs, mask)
    assert torch.equal(pasted[..., 1, 2], images[..., 1, 2]) and (pasted.sum(dim=(0, 1)) == -6).sum() == 15


# ------------------------------------------------------------------ RePaint's resampling


def test_repaint_path_walks_each_stretch_again_after_a_jump_back():
    edit = Edit(torch.zeros(SHAPE), mask=torch.ones(1, 1, 8, 8), jump_length=2, resamplings=1)
    assert repaint_path([9, 8, 7, 6, 5], edit) == [9, 8, 7, 9, 8, 7, 6, 5, 7, 6, 5]
    edit.resamplings = 2
    assert repaint_path([4, 3, 2], edit) == [4, 3, 2, 4, 3, 2, 4, 3, 2]  # the step into the clean image: once
    edit.resamplings = 0
    assert repaint_path([4, 3, 2], edit) == [4, 3, 2]
    with pytest.raises(ValueError, match="give a mask"):
        Edit(torch.zeros(SHAPE), resamplings=1)
    with pytest.raises(ValueError, match="jump_length must be a whole number >= 1"):
        Edit(torch.zeros(SHAPE), mask=torch.ones(1, 1, 8, 8), jump_length=0)


def test_the_jump_back_up_lands_on_the_forward_process_marginal():
    """RePaint's jump from s up to t > s is q(x_t | x_s): applied to x_s ~ q(x_s | x0) it must give q(x_t | x0) =
    N(sqrt(alpha_bar_t) x0, 1 - alpha_bar_t), for every pair. 400 000 draws: mean and variance within 0.01."""
    generator = torch.Generator().manual_seed(0)
    x0 = torch.full((400_000,), 0.8)
    for s, t in [(10, 60), (0, 99), (40, 41)]:
        alpha_bar_s, alpha_bar_t = alpha_bar_at(SCHEDULE, s), alpha_bar_at(SCHEDULE, t)
        x_s = alpha_bar_s ** 0.5 * x0 + (1 - alpha_bar_s) ** 0.5 * torch.randn(x0.shape, generator=generator)
        x_t = renoise(x_s, alpha_bar_s, alpha_bar_t, generator)
        assert x_t.mean().item() == pytest.approx(alpha_bar_t ** 0.5 * 0.8, abs=0.01), (s, t)
        assert x_t.var().item() == pytest.approx(1 - alpha_bar_t, abs=0.01), (s, t)


def test_dpm_solver_takes_a_first_order_step_after_a_jump_back_up():
    """DPM-Solver++(2M) extrapolates x0 from the step before, which must be at more noise. After RePaint's jump
    back up, the step before is at less noise: the solver forgets it and steps first order (as on its first step)."""
    update = dpm_solver_2m_update()
    x_t, eps = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4)
    x0_a, x0_b, x0_c = torch.randn(3, 1, 3, 4, 4)
    update(x_t, x0_a, eps, 0.3, 0.5)
    second_order = update(x_t, x0_b, eps, 0.5, 0.7)  # the step before was at alpha_bar 0.3 < 0.5: extrapolate
    assert torch.allclose(second_order, dpm_solver_2m_step(x_t, x0_b, 0.5, 0.7, x0_a, 0.3))
    after_jump = update(x_t, x0_c, eps, 0.2, 0.4)  # jumped back up: the step before (0.5) was at less noise
    assert torch.allclose(after_jump, dpm_solver_2m_step(x_t, x0_c, 0.2, 0.4))


def seam_mismatch(x: torch.Tensor) -> float:
    """How far apart the two halves of an image are along their shared edge (columns 3 and 4): the seam."""
    return (x[..., 3] - x[..., 4]).pow(2).mean().item()


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_resampling_makes_the_regenerated_half_agree_with_the_kept_half(sampler):
    """Data: images constant along each row, c * ones, with c ~ N(0, 1). Its exact denoiser (the posterior mean of
    x0 given x_t) averages x_t over each row. Inpainting the right half keeps the left: the right half should take
    the left's value, but a one-pass replacement sees the kept half only through noise. RePaint's resampling lets
    the two halves talk more: the seam shrinks."""
    W = 8

    def exact_x0_denoiser(x_t, t):
        alpha_bar = torch.tensor([alpha_bar_at(SCHEDULE, float(s)) for s in t])[:, None, None, None]
        row = x_t.mean(dim=-1, keepdim=True)  # x_t's row mean ~ N(sqrt(ab) c, ab + (1 - ab) / W) given c
        # posterior mean of c from the row mean: $\sqrt{ar\alpha}\,ar x / (ar\alpha + (1 - ar\alpha) / W)$
        return (alpha_bar.sqrt() * row / (alpha_bar + (1 - alpha_bar) / W)).expand_as(x_t)

    x0 = torch.randn(16, 1, 8, 1, generator=torch.Generator().manual_seed(3)).expand(16, 1, 8, W).contiguous()
    mask = torch.zeros(1, 1, 8, W)
    mask[..., W // 2:] = 1.0
    mismatch = {}
    for resamplings in (0, 4):
        edit = Edit(x0, mask=mask, jump_length=2, resamplings=resamplings, generator=torch.Generator().manual_seed(1))
        x = SAMPLERS[sampler](exact_x0_denoiser, x0.shape, SCHEDULE, "x0", steps=10, clip_x0=False,
                              generator=torch.Generator().manual_seed(0), edit=edit)
        assert torch.equal(x[..., : W // 2], x0[..., : W // 2])
        mismatch[resamplings] = seam_mismatch(x)
    assert mismatch[4] < 0.5 * mismatch[0], mismatch


# ------------------------------------------------------------------ reproducible from the generator alone


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_every_editing_path_is_reproducible_from_its_generator_alone(sampler):
    """The same seed gives the same images, whatever else draws from torch's global RNG in between: plain sampling,
    SDEdit, inpainting with the kept region's noise from the sampler's generator (no generator of its own), and
    RePaint."""
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5))
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:5, 3:7] = 1.0
    for edit_options in (None, {"strength": 0.6}, {"mask": mask}, {"mask": mask, "resamplings": 1, "jump_length": 3}):
        results = []
        for global_seed in (0, 1):
            torch.manual_seed(global_seed)  # disturb the global RNG: nothing may depend on it
            torch.randn(7)
            edit = None if edit_options is None else Edit(x0, **edit_options)
            results.append(run(sampler, edit, steps=6, seed=11, denoiser=mixing_denoiser)[0])
        assert torch.equal(*results), edit_options
        other_seed = run(sampler, None if edit_options is None else Edit(x0, **edit_options), steps=6, seed=12,
                         denoiser=mixing_denoiser)[0]
        assert not torch.equal(results[0], other_seed), edit_options  # the generator does decide the images
