"""img2img (SDEdit) and inpainting with every sampler: the strength, the kept region, the latent mask. (In the
pipeline: tests/test_pipeline.py; on the command line: tests/cli/test_cli_sample.py.)"""

import pytest
import torch

from minidiff.diffusion.editing import Edit, latent_mask
from minidiff.diffusion.samplers import SAMPLERS
from minidiff.diffusion.schedule import make_schedule

SCHEDULE = make_schedule("cosine", 100)
SHAPE = (2, 3, 8, 8)


def fake_denoiser(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A fixed, smooth "v prediction" that depends on x_t and t: enough to tell the code paths apart."""
    return 0.3 * torch.tanh(x_t) + 0.01 * t.float()[:, None, None, None] / 100


def run(sampler: str, edit: Edit | None, steps: int = 10, seed: int = 0):
    counted = []
    x = SAMPLERS[sampler](fake_denoiser, SHAPE, SCHEDULE, "v", steps=steps, generator=torch.Generator().manual_seed(seed),
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


@pytest.mark.parametrize("sampler", ["ddim", "dpm++", "euler"])
def test_strength_runs_that_share_of_the_steps(sampler):
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5))
    _, nfe = run(sampler, Edit(x0, strength=0.5), steps=10)
    assert nfe == 5


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


def test_latent_mask_pools_the_pixel_mask_by_area():
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., :8, :6] = 1.0  # regenerate the top left 8 x 6 pixels
    cell_mask = latent_mask(mask, 4)
    assert cell_mask.shape == (1, 1, 8, 8)
    assert cell_mask[0, 0, 0, 0] == 1 and cell_mask[0, 0, 0, 1] == 0.5 and cell_mask[0, 0, 0, 2] == 0  # 4, 2, 0 of 4
