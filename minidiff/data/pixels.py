"""Between stored pixels and the model: uint8 images in [0, 255] and float tensors in [-1, 1].

Images are stored as uint8, (N, H, W) or (N, H, W, C); the model sees float32 (N, C, H, W) in [-1, 1], scaled
linearly (Ho et al. 2020, sec. 3.3). `to_model` converts one way, `from_model` back, clipped to [0, 255].
"""

import numpy as np
import torch


def to_model(images: np.ndarray) -> torch.Tensor:
    """uint8 images (N, H, W) or (N, H, W, C) -> float32 tensor (N, C, H, W) in [-1, 1]."""
    x = torch.tensor(np.asarray(images), dtype=torch.float32)  # a copy: the source may be read-only
    if x.ndim == 3:
        x = x.unsqueeze(-1)  # (N, H, W) -> (N, H, W, 1)
    if x.ndim != 4:
        raise ValueError(f"expected images of shape (N, H, W) or (N, H, W, C), got {tuple(x.shape)}")
    x = x.permute(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
    return x / 127.5 - 1.0


def from_model(x: torch.Tensor) -> np.ndarray:
    """float tensor (N, C, H, W) in [-1, 1] -> uint8 images (N, H, W, C), clipped; C = 1 is kept."""
    if x.ndim != 4:
        raise ValueError(f"expected a tensor of shape (N, C, H, W), got {tuple(x.shape)}")
    x = ((x.detach().float().cpu() + 1.0) * 127.5).round().clamp(0, 255)
    return x.permute(0, 2, 3, 1).to(torch.uint8).numpy()  # (N, C, H, W) -> (N, H, W, C)
