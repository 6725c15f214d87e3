r"""Training a diffusion model: a plain loop, one idea per function.

Papers followed:
- Ho, Jain & Abbeel 2020 (DDPM): the training loop, Algorithm 1; an EMA of the weights for sampling (appendix B).
- Salimans & Ho 2022: the v target (see `minidiff.diffusion.forward.training_target`).
- Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting Strategy", sec. 3.4: per-step loss weights.
- Ho & Salimans 2022, "Classifier-Free Diffusion Guidance", Algorithm 1: train with the label dropped to a null class.
- Loshchilov & Hutter 2019: AdamW; Goyal et al. 2017: linear learning-rate warm-up.

    python -m minidiff train --config mnist --out runs/mnist --minutes 60     # a new run
    python -m minidiff train --out runs/mnist --minutes 120 --resume         # carry on to 120 minutes in all

What a run folder holds, and how --resume restores a run exactly, is `minidiff.run_folder`.

Reproducibility: every random draw of a step (batch order, t, eps, class drop) comes from one CPU generator,
dropout from torch's global RNG; both are saved in each checkpoint, so a resumed run has exactly the losses
that an uninterrupted run would have had.
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
        # $w_t = \min(\mathrm{SNR}_t, \gamma) / \mathrm{SNR}_t = \min(1, \gamma / \mathrm{SNR}_t)$ (1 where SNR = 0)
        weights = (gamma / snr).clamp(max=1.0)
    elif prediction == "x0":
        # $w_t = \min(\mathrm{SNR}_t, \gamma)$
        weights = snr.clamp(max=gamma)
    else:
        # $w_t = \min(\mathrm{SNR}_t, \gamma) / (\mathrm{SNR}_t + 1)$
        weights = snr.clamp(max=gamma) / (snr + 1)
    return weights.float()
