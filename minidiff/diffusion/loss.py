r"""The per-step weights of the diffusion loss: Min-SNR-gamma, for each prediction target (eps, x0, v).

The loss itself (DDPM's Algorithm 1: noise an image to a random step, ask the network, square the error) is
`minidiff.training.loop.diffusion_loss`, which multiplies each image's error by these weights; what the network is
asked to output is `minidiff.diffusion.forward.training_target`.

Papers followed: Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting Strategy", sec. 3.4: weight
the x0 error by min(SNR_t, gamma), and the eps and v errors by that divided by what turns them into an x0 error.
"""

import torch


def loss_weights(snr: torch.Tensor, gamma: float | None, prediction: str) -> torch.Tensor:
    r"""Min-SNR-gamma weights (Hang et al. 2023, sec. 3.4): per sample, so that high-SNR steps do not dominate.

    The x0 error is weighted by $\min(\mathrm{SNR}_t, \gamma)$. The eps error is SNR_t times the x0 error and the
    v error (SNR_t + 1) times it, so their weights divide by that factor. gamma = None: all weights 1.
    """
    if gamma is None:
        return torch.ones_like(snr, dtype=torch.float32)
    if prediction == "eps":
        # weight $= \min(\mathrm{SNR}_t, \gamma) / \mathrm{SNR}_t = \min(1, \gamma / \mathrm{SNR}_t)$ (1 where SNR = 0)
        weights = (gamma / snr).clamp(max=1.0)
    elif prediction == "x0":
        # weight $= \min(\mathrm{SNR}_t, \gamma)$
        weights = snr.clamp(max=gamma)
    else:
        # weight $= \min(\mathrm{SNR}_t, \gamma) / (\mathrm{SNR}_t + 1)$
        weights = snr.clamp(max=gamma) / (snr + 1)
    return weights.float()
