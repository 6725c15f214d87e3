"""Tests for minidiff.measure.metrics and minidiff.measure.classifier: the Fréchet distance against closed forms, the
shipped classifier against held-out real digits, and clear errors for bad inputs and corrupt checkpoints."""

import json
import shutil

import numpy as np
import pytest
import torch

from minidiff.data.digits import mnist5k
from minidiff.data.pixels import to_model
from minidiff.measure.classifier import (
    DigitClassifier,
    DigitClassifierConfig,
    held_out_split,
    load_classifier,
    random_shift,
    save_classifier,
)
from minidiff.measure.metrics import (
    CLASSIFIER_PATH,
    as_model_images,
    class_accuracy,
    classify_digits,
    digit_features,
    digit_frechet_distance,
    feature_statistics,
    frechet_distance,
    frechet_distance_from_statistics,
    load_digit_classifier,
    real_vs_real_baseline,
)


def random_covariance(d: int, rng: np.random.Generator) -> np.ndarray:
    """A random symmetric positive definite (d, d) matrix."""
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def noise_digits(n: int, seed: int) -> torch.Tensor:
    """Uniform noise in [-1, 1], shaped like digits (n, 1, 28, 28)."""
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# --- the Fréchet distance ------------------------------------------------------------------------------------------

def test_frechet_distance_of_a_set_with_itself_is_zero():
    features = np.random.default_rng(0).normal(size=(500, 16)) @ random_covariance(16, np.random.default_rng(1))
    assert frechet_distance(features, features) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_matches_closed_form_for_diagonal_gaussians():
    # For diagonal covariances the matrices commute: d^2 = |mu_a - mu_b|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2.
    mean_a, mean_b = np.array([0.0, 1.0, -2.0, 0.5]), np.array([1.0, 1.0, 0.0, -0.5])
    var_a, var_b = np.array([1.0, 4.0, 0.25, 2.0]), np.array([9.0, 1.0, 0.25, 0.5])
    expected = np.sum((mean_a - mean_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
    exact = frechet_distance_from_statistics(torch.tensor(mean_a), torch.tensor(np.diag(var_a)),
                                             torch.tensor(mean_b), torch.tensor(np.diag(var_b)))
    assert exact == pytest.approx(expected, rel=1e-10)
    # From samples: the estimate converges to the same number.
    rng = np.random.default_rng(0)
    samples_a = mean_a + np.sqrt(var_a) * rng.normal(size=(200_000, 4))
    samples_b = mean_b + np.sqrt(var_b) * rng.normal(size=(200_000, 4))
    assert frechet_distance(samples_a, samples_b) == pytest.approx(expected, rel=0.01)


def test_frechet_distance_matches_eigenvalues_of_the_plain_product_for_full_covariances():
    # Independent reference: Tr((S_a S_b)^{1/2}) = sum of square roots of the eigenvalues of the non-symmetric S_a S_b.
    rng = np.random.default_rng(2)
    d = 12
    mean_a, mean_b = rng.normal(size=d), rng.normal(size=d)
    cov_a, cov_b = random_covariance(d, rng), random_covariance(d, rng)
    trace_sqrt = np.sqrt(np.linalg.eigvals(cov_a @ cov_b).real).sum()
    expected = np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt
    ours = frechet_distance_from_statistics(*(torch.tensor(v) for v in (mean_a, cov_a, mean_b, cov_b)))
    assert ours == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_in_one_dimension_is_mean_gap_plus_std_gap_squared():
    ours = frechet_distance_from_statistics(torch.tensor([1.0]), torch.tensor([[4.0]]),
                                            torch.tensor([-2.0]), torch.tensor([[9.0]]))
    assert ours == pytest.approx((1.0 + 2.0) ** 2 + (2.0 - 3.0) ** 2)


def test_frechet_distance_handles_singular_covariances():
    # Features that never vary (dead units) give zero rows and columns; the distance stays finite and exact.
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(400, 6)), 2 * rng.normal(size=(400, 6))
    a[:, :2], b[:, :2] = 0.0, 0.0
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(a[:, 2:], b[:, 2:]), rel=1e-9)


def test_frechet_distance_is_symmetric():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(300, 10)) @ random_covariance(10, rng)
    b = rng.normal(size=(300, 10)) @ random_covariance(10, rng) + 0.5
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)


def test_frechet_distance_grows_as_the_squared_mean_shift():
    # Shifting a set leaves its covariance unchanged, so only |mu_a - mu_b|^2 = c^2 |u|^2 remains.
    rng = np.random.default_rng(5)
    a = rng.normal(size=(300, 8)) @ random_covariance(8, rng)
    u = rng.normal(size=8)
    for c in [0.5, 1.0, 2.0, 4.0]:
        assert frechet_distance(a, a + c * u) == pytest.approx(c ** 2 * np.sum(u ** 2), rel=1e-7)


def test_feature_statistics_match_numpy():
    features = np.random.default_rng(6).normal(size=(50, 5))
    mean, covariance = feature_statistics(features)
    np.testing.assert_allclose(mean.numpy(), features.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(covariance.numpy(), np.cov(features, rowvar=False), rtol=1e-12)


def test_frechet_distance_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="feature sizes differ"):
        frechet_distance(np.zeros((10, 3)), np.zeros((10, 4)))
    with pytest.raises(ValueError, match=r"\(N, d\)"):
        frechet_distance(np.zeros(10), np.zeros(10))
    with pytest.raises(ValueError, match="N >= 2"):
        frechet_distance(np.zeros((1, 3)), np.zeros((10, 3)))
    with pytest.raises(ValueError, match="covariance_b"):
        frechet_distance_from_statistics(torch.zeros(3), torch.eye(3), torch.zeros(3), torch.eye(4))


# --- the classifier ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def held_out():
    """The digits the shipped classifier never saw in training, chosen as its training script chose them."""
    record = json.loads(CLASSIFIER_PATH.with_suffix(".json").read_text())
    digits, labels = mnist5k()
    _, held_out_idx = held_out_split(labels, per_class=record["held_out_per_class"], seed=record["split_seed"])
    return digits[held_out_idx], labels[held_out_idx]


def test_held_out_split_is_disjoint_balanced_and_seeded():
    labels = mnist5k()[1]
    train, held = held_out_split(labels, per_class=50, seed=0)
    assert len(np.intersect1d(train, held)) == 0 and len(train) + len(held) == len(labels)
    assert np.bincount(labels[held]).tolist() == [50] * 10
    np.testing.assert_array_equal(held, held_out_split(labels, per_class=50, seed=0)[1])
    assert not np.array_equal(held, held_out_split(labels, per_class=50, seed=1)[1])


def test_shipped_classifier_reads_held_out_digits(held_out):
    digits, labels = held_out
    assert class_accuracy(digits, labels) >= 0.95


def test_shipped_classifier_is_robust_to_small_shifts(held_out):
    digits, labels = held_out
    shifted = random_shift(to_model(digits), max_shift=2, generator=torch.Generator().manual_seed(0))
    assert class_accuracy(shifted, labels) >= 0.95


def test_uint8_and_model_floats_give_the_same_answers(held_out):
    digits, _ = held_out
    floats = to_model(digits[:100])
    torch.testing.assert_close(digit_features(digits[:100]), digit_features(floats))
    torch.testing.assert_close(classify_digits(torch.from_numpy(digits[:100])[:, None]), classify_digits(floats))


def test_noise_is_not_read_as_the_wanted_digit():
    n = 1000
    wanted = torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(0))
    assert class_accuracy(noise_digits(n, seed=1), wanted) < 0.2  # chance is 0.1


def test_features_have_the_documented_shape():
    digits, _ = mnist5k()
    features = digit_features(digits[:7])
    assert features.shape == (7, load_digit_classifier().config.feature_dim)
    assert features.dtype == torch.float32


def test_real_vs_real_baseline_is_far_below_real_vs_noise():
    digits, _ = mnist5k()
    baseline = real_vs_real_baseline(500, seed=0)
    real_vs_noise = digit_frechet_distance(digits[:500], noise_digits(500, seed=2))
    assert 0 < baseline < real_vs_noise / 10


def test_real_vs_real_baseline_refuses_sets_that_cannot_be_disjoint():
    with pytest.raises(ValueError, match="2500"):
        real_vs_real_baseline(3000)


def test_bad_images_give_clear_errors():
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        classify_digits(torch.zeros(4, 3, 28, 28))
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        digit_features(np.zeros((4, 32, 32), dtype=np.uint8))
    with pytest.raises(ValueError, match="to_model"):
        classify_digits(torch.full((4, 1, 28, 28), 255.0))
    with pytest.raises(ValueError, match="one wanted label per image"):
        class_accuracy(torch.zeros(4, 1, 28, 28), torch.zeros(5))


def test_floats_are_clipped_to_the_pixel_range():
    x = torch.linspace(-1.5, 1.5, 28 * 28).reshape(1, 1, 28, 28)
    assert as_model_images(x).min() == -1 and as_model_images(x).max() == 1


def test_random_shift_moves_each_image_by_at_most_max_shift():
    x = to_model(mnist5k()[0][:8])
    shifted = random_shift(x, max_shift=2, generator=torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), value=-1.0)
    for i in range(len(x)):
        crops = [padded[i, :, dy:dy + 28, dx:dx + 28] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(shifted[i], crop) for crop in crops)
    assert torch.equal(random_shift(x, max_shift=0), x)


# --- saving and loading --------------------------------------------------------------------------------------------

def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = DigitClassifier(DigitClassifierConfig(channels=(4, 8, 8), feature_dim=16))
    save_classifier(model, tmp_path / "tiny.safetensors", {"seed": 0})
    loaded = load_classifier(tmp_path / "tiny.safetensors")
    x = noise_digits(3, seed=0)
    torch.testing.assert_close(loaded(x), model.eval()(x))
    assert json.loads((tmp_path / "tiny.json").read_text())["seed"] == 0
    assert not loaded.training


def test_corrupt_checkpoint_gives_a_clear_error(tmp_path):
    weights = tmp_path / "digit_classifier.safetensors"
    shutil.copy(CLASSIFIER_PATH.with_suffix(".json"), tmp_path / "digit_classifier.json")
    weights.write_bytes(b"this is not a safetensors file")
    with pytest.raises(ValueError, match="train_digit_classifier.py"):
        load_digit_classifier(weights)
    weights.write_bytes(CLASSIFIER_PATH.read_bytes()[:1000])  # truncated
    with pytest.raises(ValueError, match="train_digit_classifier.py"):
        load_digit_classifier(weights)


def test_mismatched_weights_give_a_clear_error(tmp_path):
    save_classifier(DigitClassifier(DigitClassifierConfig(channels=(4, 8, 8))), tmp_path / "c.safetensors", {})
    shutil.copy(CLASSIFIER_PATH.with_suffix(".json"), tmp_path / "c.json")  # a config that does not fit the weights
    with pytest.raises(ValueError, match="train_digit_classifier.py"):
        load_classifier(tmp_path / "c.safetensors")


def test_missing_checkpoint_says_how_to_make_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_digit_classifier.py"):
        load_classifier(tmp_path / "nowhere.safetensors")
