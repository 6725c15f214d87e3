r"""The per-step weights of the diffusion loss: Min-SNR-gamma, for each prediction target (eps, x0, v).

The loss itself (DDPM's Algorithm 1: noise an image to a random step, ask the network, square the error) is
`minidiff.training.loop.diffusion_loss`, which multiplies each image's error by these weights; what the network is
asked to output is `minidiff.diffusion.forward.training_target`.

Papers followed: Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting Strategy", sec. 3.4: weight
the x0 error by min(SNR_t, gamma), and the eps and v errors by that divided by what turns them into an x0 error;
at SNR = 0 (a zero-terminal-SNR schedule's last step) the weight is 1 for every target, as in the authors' code.
"""

import torch


def loss_weights(snr: torch.Tensor, gamma: float | None, prediction: str) -> torch.Tensor:
    r"""Min-SNR-gamma weights (Hang et al. 2023, sec. 3.4), one per sample, so that high-SNR steps do not dominate.

    snr: (B,) the SNR of each sample's timestep, >= 0. Returns (B,) float32. gamma = None: all weights 1.

    Derivation. With $x_t = \sqrt{\bar\alpha}\, x_0 + \sqrt{1 - \bar\alpha}\, \epsilon$ held fixed, an error in the
    predicted eps or v is a scaled error in the implied x0:
    $\|\hat\epsilon - \epsilon\|^2 = \mathrm{SNR}_t\, \|\hat x_0 - x_0\|^2$ and
    $\|\hat v - v\|^2 = (\mathrm{SNR}_t + 1)\, \|\hat x_0 - x_0\|^2$. Min-SNR-gamma weights the x0 error by
    $\min(\mathrm{SNR}_t, \gamma)$, so
      x0:   $w = \min(\mathrm{SNR}_t, \gamma)$
      eps:  $w = \min(\mathrm{SNR}_t, \gamma) / \mathrm{SNR}_t = \min(1, \gamma / \mathrm{SNR}_t)$
      v:    $w = \min(\mathrm{SNR}_t, \gamma) / (\mathrm{SNR}_t + 1)$.
    At SNR = 0 these read 0/0 (eps) and 0 (x0, v): a zero-terminal-SNR run would never train its last timestep,
    the one every sampler starts from. There x_t is pure noise, the v target is -x0 and the x0 target x0 itself:
    the authors' code (Hang et al., `training_losses`) sets the weight at SNR = 0 to 1 for every target, the limit
    of the eps weight as SNR -> 0, i.e. the plain loss. So do we. At the largest SNR (t = 0) the weights are
    gamma / SNR (eps), gamma (x0) and gamma / (SNR + 1) (v).
    """
    if gamma is None:
        return torch.ones_like(snr, dtype=torch.float32)
    capped = snr.clamp(max=gamma)  # $\min(\mathrm{SNR}_t, \gamma)$
    if prediction == "eps":
        # $w = \min(\mathrm{SNR}_t, \gamma) / \mathrm{SNR}_t = \min(1, \gamma / \mathrm{SNR}_t)$
        weights = (gamma / snr).clamp(max=1.0)
    elif prediction == "x0":
        # $w = \min(\mathrm{SNR}_t, \gamma)$
        weights = capped
    else:
        # $w = \min(\mathrm{SNR}_t, \gamma) / (\mathrm{SNR}_t + 1)$
        weights = capped / (snr + 1)
    # $w = 1$ where $\mathrm{SNR}_t = 0$, for every target (Hang et al.'s code)
    weights = torch.where(snr == 0, torch.ones_like(weights), weights)
    return weights.float()
