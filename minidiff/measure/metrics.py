"""How good are generated digits? Class accuracy and the Fréchet distance, measured by a small digit classifier.

Papers followed:
- Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium":
  the Fréchet Inception Distance (FID), eq. 6. Here the Inception network is replaced by
  `minidiff.measure.classifier.DigitClassifier`, so numbers are comparable only with other numbers from this module.
- Dowson & Landau 1982: the Fréchet (2-Wasserstein) distance between two Gaussians in closed form.

Two questions, two metrics:
- Is the digit the one that was asked for? `class_accuracy(images, wanted_labels)`.
- Do generated digits look like real ones, in quality and in variety? `frechet_distance` between the classifier's
  penultimate-layer features of the two sets. Lower is better; `real_vs_real_baseline(n)`, two sets of n real
  digits compared with each other, is the reference to read it beside: the estimate is biased upwards for small n,
  and by about this much. It is not a floor: a sampler's digits can score a little below it (DDPM at 1,000 steps
  scores 8.64 against 8.68 at n = 1,000).

Images are the model's floats (N, 1, 28, 28) in [-1, 1], or uint8 (N, 28, 28) as `minidiff.data.digits.mnist5k()` gives.
"""

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from minidiff.data.digits import mnist5k
from minidiff.data.paths import DATA_DIR
from minidiff.data.pixels import to_model
from minidiff.measure.classifier import DigitClassifier, load_classifier

CLASSIFIER_PATH = DATA_DIR / "checkpoints" / "digit_classifier.safetensors"
BATCH_SIZE = 500  # images per forward pass: bounds memory, not results


@lru_cache(maxsize=4)
def load_digit_classifier(path: Path | str = CLASSIFIER_PATH, device: str = "cpu") -> DigitClassifier:
    """The shipped digit classifier (data/checkpoints/digit_classifier.*), in eval mode; loaded once per path."""
    return load_classifier(path, device=device)


def as_model_images(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Digits as the classifier wants them: float32 (N, 1, 28, 28) in [-1, 1], on the CPU.

    Accepts uint8 (N, 28, 28), (N, 28, 28, 1) or (N, 1, 28, 28) (numpy or torch), or floats (N, 1, 28, 28) in
    [-1, 1]; floats slightly outside [-1, 1], as samplers produce, are clipped.
    """
    images = torch.as_tensor(images).cpu()
    if images.dtype == torch.uint8:
        if images.ndim == 4 and images.shape[1] == 1:
            images = images[:, 0]  # (N, 1, 28, 28) -> (N, 28, 28)
        images = to_model(images.numpy())  # (N, 28, 28) -> (N, 1, 28, 28) in [-1, 1]
    if images.ndim != 4 or tuple(images.shape[1:]) != (1, 28, 28):
        raise ValueError(f"expected digits of shape (N, 1, 28, 28) (floats in [-1, 1]) or (N, 28, 28) (uint8), "
                         f"got {tuple(images.shape)} of {images.dtype}")
    images = images.float()
    if len(images) > 0 and images.abs().max() > 2:
        raise ValueError(f"float digits should lie in [-1, 1] but reach {images.abs().max():.1f}; "
                         "convert uint8 pixels with minidiff.data.pixels.to_model or pass them as uint8")
    return images.clamp(-1, 1)


def in_batches(function: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
               device: torch.device) -> torch.Tensor:
    """Apply `function` (the classifier or one of its methods) to images in batches on `device`, without
    gradients; the result comes back to the CPU."""
    with torch.no_grad():
        results = [function(batch.to(device)).cpu() for batch in images.split(BATCH_SIZE)]
    return torch.cat(results)


def classify_digits(images: np.ndarray | torch.Tensor, classifier: DigitClassifier | None = None) -> torch.Tensor:
    """The digit each image shows, by the classifier: images (N, ...) -> labels int64 (N,)."""
    classifier = classifier or load_digit_classifier()
    device = next(classifier.parameters()).device
    logits = in_batches(classifier, as_model_images(images), device)  # (N, 1, 28, 28) -> (N, 10)
    return logits.argmax(dim=1)  # (N, 10) -> (N,)


def digit_features(images: np.ndarray | torch.Tensor, classifier: DigitClassifier | None = None) -> torch.Tensor:
    """Penultimate-layer features of the classifier: images (N, ...) -> float32 (N, feature_dim)."""
    classifier = classifier or load_digit_classifier()
    device = next(classifier.parameters()).device
    return in_batches(classifier.features, as_model_images(images), device)  # (N, 1, 28, 28) -> (N, feature_dim)


def class_accuracy(images: np.ndarray | torch.Tensor, wanted_labels: np.ndarray | torch.Tensor,
                   classifier: DigitClassifier | None = None) -> float:
    """Fraction of images that the classifier reads as the digit that was asked for."""
    wanted_labels = torch.as_tensor(wanted_labels).long()
    if wanted_labels.shape != (len(images),):
        raise ValueError(f"expected one wanted label per image, shape ({len(images)},), "
                         f"got {tuple(wanted_labels.shape)}")
    return (classify_digits(images, classifier) == wanted_labels).double().mean().item()


def feature_statistics(features: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (d,) and unbiased covariance (d, d) of features (N, d), in float64."""
    features = torch.as_tensor(features, dtype=torch.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"expected features of shape (N, d) with N >= 2, got {tuple(features.shape)}")
    mean = features.mean(dim=0)  # (N, d) -> (d,)
    centred = features - mean
    # $C = \frac{1}{N-1} \sum_i (f_i - \mu)(f_i - \mu)^\top$
    covariance = centred.T @ centred / (len(features) - 1)  # (d, N) @ (N, d) -> (d, d)
    return mean, covariance


def symmetric_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix, by eigen-decomposition: V diag(sqrt(w)) V^T.

    Eigenvalues that rounding made slightly negative are treated as 0.
    """
    eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
    # $A^{1/2} = V \operatorname{diag}(\sqrt{w}) V^\top$ for $A = V \operatorname{diag}(w) V^\top$
    return eigenvectors @ torch.diag(eigenvalues.clamp(min=0).sqrt()) @ eigenvectors.T


def frechet_distance_from_statistics(mean_a: torch.Tensor, covariance_a: torch.Tensor,
                                     mean_b: torch.Tensor, covariance_b: torch.Tensor) -> float:
    """Squared Fréchet distance between the Gaussians N(mean_a, covariance_a) and N(mean_b, covariance_b).

    With C the covariances, Tr((C_a C_b)^{1/2}) is computed as Tr((C_a^{1/2} C_b C_a^{1/2})^{1/2}): the two products
    have the same eigenvalues, and the second is symmetric positive semi-definite, so its square root is real and
    stable.
    """
    mean_a, mean_b = (torch.as_tensor(m, dtype=torch.float64) for m in (mean_a, mean_b))
    covariance_a, covariance_b = (torch.as_tensor(c, dtype=torch.float64) for c in (covariance_a, covariance_b))
    d = mean_a.shape[0]
    for name, value, shape in [("mean_b", mean_b, (d,)), ("covariance_a", covariance_a, (d, d)),
                               ("covariance_b", covariance_b, (d, d))]:
        if tuple(value.shape) != shape:
            raise ValueError(f"{name} should have shape {shape} to match mean_a {(d,)}, got {tuple(value.shape)}")
    sqrt_a = symmetric_sqrt(covariance_a)
    middle = sqrt_a @ covariance_b @ sqrt_a
    middle = (middle + middle.T) / 2  # symmetric in exact arithmetic; remove the rounding that says otherwise
    # $\operatorname{Tr}\big((C_a C_b)^{1/2}\big) = \sum_i \sqrt{\mathrm{eig}_i(C_a^{1/2} C_b C_a^{1/2})}$
    trace_sqrt_product = torch.linalg.eigvalsh(middle).clamp(min=0).sqrt().sum()
    # Heusel et al. 2017, eq. 6:
    # $d^2 = \lVert \mu_a - \mu_b \rVert_2^2 + \operatorname{Tr}\big(C_a + C_b - 2 (C_a C_b)^{1/2}\big)$
    mean_term = (mean_a - mean_b).square().sum()
    distance = mean_term + covariance_a.trace() + covariance_b.trace() - 2 * trace_sqrt_product
    return max(distance.item(), 0.0)  # >= 0 in exact arithmetic


def frechet_distance(features_a: np.ndarray | torch.Tensor, features_b: np.ndarray | torch.Tensor) -> float:
    """Squared Fréchet distance between Gaussians fitted to two feature sets (N_a, d) and (N_b, d) (FID's formula)."""
    mean_a, covariance_a = feature_statistics(features_a)
    mean_b, covariance_b = feature_statistics(features_b)
    if mean_a.shape != mean_b.shape:
        raise ValueError(f"feature sizes differ: {mean_a.shape[0]} vs {mean_b.shape[0]}")
    return frechet_distance_from_statistics(mean_a, covariance_a, mean_b, covariance_b)


def digit_frechet_distance(images_a: np.ndarray | torch.Tensor, images_b: np.ndarray | torch.Tensor,
                           classifier: DigitClassifier | None = None) -> float:
    """Fréchet distance between two sets of digits, in the classifier's feature space (an 'FID for MNIST')."""
    return frechet_distance(digit_features(images_a, classifier), digit_features(images_b, classifier))


def real_vs_real_baseline(n: int = 1000, seed: int = 0, classifier: DigitClassifier | None = None) -> float:
    """Fréchet distance between two disjoint random sets of n real MNIST-5k digits: what a perfect generator scores.

    MNIST-5k has 5,000 digits, so n is at most 2,500. Compare a generator's n samples with n real digits, since
    the distance depends on n.
    """
    digits, _ = mnist5k()
    if not 2 <= n <= len(digits) // 2:
        raise ValueError(f"n must be between 2 and {len(digits) // 2} (two disjoint sets of MNIST-5k), got {n}")
    order = np.random.default_rng(seed).permutation(len(digits))
    return digit_frechet_distance(digits[order[:n]], digits[order[n:2 * n]], classifier)
