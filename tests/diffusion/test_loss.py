"""The loss weights against their derivation: min-SNR-gamma turns every target into a weighted x0 error."""

import pytest
import torch

from minidiff.diffusion.forward import q_sample, training_target, x0_and_eps_from_output
from minidiff.diffusion.loss import loss_weights
from minidiff.diffusion.schedule import make_schedule


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_min_snr_weights_turn_every_target_into_min_snr_gamma_times_the_x0_error(prediction):
    """Hang et al. 2023: the weighted loss of any target equals min(SNR, gamma) * |x0 - x0_hat|^2."""
    schedule, gamma = make_schedule("cosine", 1000), 5.0
    generator = torch.Generator().manual_seed(0)
    t = torch.tensor([0, 10, 200, 500, 800, 999])
    x0 = torch.rand((6, 1, 4, 4), generator=generator, dtype=torch.float64) * 2 - 1
    eps = torch.randn((6, 1, 4, 4), generator=generator, dtype=torch.float64)
    alpha_bar = schedule.alpha_bar[t]
    x_t = q_sample(schedule, x0, t, eps)
    output = torch.randn((6, 1, 4, 4), generator=generator, dtype=torch.float64)  # some imperfect network output
    x0_hat, _ = x0_and_eps_from_output(prediction, output, x_t, alpha_bar)
    target = training_target(prediction, x0, eps, alpha_bar)
    weighted = loss_weights(schedule.snr[t], gamma, prediction).double() * ((output - target) ** 2).mean(dim=(1, 2, 3))
    expected = schedule.snr[t].clamp(max=gamma) * ((x0_hat - x0) ** 2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(weighted, expected, rtol=1e-5, atol=1e-9)


def min_snr_by_hand(snr: float, gamma: float, prediction: str) -> float:
    """Hang et al. 2023, sec. 3.4, written out in float64: min(SNR, gamma) over the factor that turns the target's
    error into an x0 error (SNR for eps, SNR + 1 for v, 1 for x0); 1 at SNR = 0 for every target (their code)."""
    if snr == 0.0:
        return 1.0
    factor = {"eps": snr, "x0": 1.0, "v": snr + 1.0}[prediction]
    return min(snr, gamma) / factor


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
@pytest.mark.parametrize("zero_terminal_snr", [False, True])
def test_min_snr_weights_at_both_ends_of_the_schedule_match_the_formula(prediction, zero_terminal_snr):
    """SNR = 0 (a zero-terminal-SNR schedule's last step), the largest SNR (t = 0), and steps in between."""
    gamma = 5.0
    schedule = make_schedule("cosine", 1000, zero_terminal_snr=zero_terminal_snr)
    snr = schedule.snr.double()
    t = torch.tensor([0, 1, 300, 700, 998, 999])
    assert (snr[999] == 0) == zero_terminal_snr and snr[0] == snr.max()
    weights = loss_weights(snr[t], gamma, prediction)
    expected = torch.tensor([min_snr_by_hand(float(snr[i]), gamma, prediction) for i in t], dtype=torch.float64)
    torch.testing.assert_close(weights.double(), expected, rtol=1e-6, atol=0)


def test_min_snr_weights_at_zero_snr_are_one_for_every_target_and_without_gamma():
    snr = torch.tensor([0.0, 1.0, 100.0], dtype=torch.float64)
    assert loss_weights(snr, 5.0, "eps").tolist() == [1.0, 1.0, 0.05000000074505806]  # 5 / 100 in float32
    assert loss_weights(snr, 5.0, "x0").tolist() == [1.0, 1.0, 5.0]
    assert loss_weights(snr, 5.0, "v")[:2].tolist() == [1.0, 0.5] and loss_weights(snr, 5.0, "v")[2].item() == pytest.approx(5 / 101)
    assert loss_weights(snr, None, "eps").tolist() == [1.0, 1.0, 1.0]
