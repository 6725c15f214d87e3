"""Measuring text to emoji, each tool on cases whose answer is known: R-precision with an evaluator whose ranking is
constructed, the Fréchet distance against the formula by another route, memorisation of planted copies, the
skin-tone reader on painted faces and real emoji, the style classifier on textures it must tell apart."""

import numpy as np
import pytest
import torch

from minidiff.data.emoji import STYLES, TONES, emoji
from minidiff.measure.emoji import evaluator_frechet, memorisation, r_precision, ranked_among
from minidiff.measure.emoji_readers import fit_style_classifier, fit_tone_reader, tone_accuracy

CAPTIONS = [f"thing {k}" for k in range(150)]


class KnownEvaluator:
    """An evaluator whose answers are planted: an image shows thing k when its first pixel is k / 200, and its
    embedding is the one-hot vector of k; caption "thing k" embeds to the same vector. Features: the pixels."""

    def image_embeddings(self, images):
        k = (torch.as_tensor(images)[:, 0, 0, 0] * 200).round().long()
        return torch.nn.functional.one_hot(k, len(CAPTIONS)).float()

    def text_embeddings(self, captions):
        return torch.nn.functional.one_hot(torch.tensor([int(c.split()[1]) for c in captions]), len(CAPTIONS)).float()

    def image_features(self, images):
        return torch.as_tensor(images).flatten(1)[:, :6].double()


def showing(things: list[int]) -> torch.Tensor:
    images = torch.zeros(len(things), 3, 32, 32)
    images[:, 0, 0, 0] = torch.tensor(things, dtype=torch.float32) / 200
    return images


def test_r_precision_is_the_share_of_images_whose_prompt_ranks_first():
    prompts = [CAPTIONS[k] for k in range(30)]
    drawn = list(range(20)) + [100 + k for k in range(10)]  # the last ten draw another thing than asked
    scores = r_precision(KnownEvaluator(), showing(drawn), showing(list(range(30))), prompts, CAPTIONS)
    assert scores["generated"] == pytest.approx(20 / 30, abs=1e-4) and scores["real"] == 1.0
    assert scores["ratio"] == pytest.approx(2 / 3, abs=1e-3) and scores["candidates"] == 100
    # an image of another thing ties with the truth at similarity 0 or loses to it: never first, sometimes top 5
    ranked = ranked_among(KnownEvaluator(), showing([149] * 4), prompts[:4], CAPTIONS, candidates=100, seed=3)
    assert ranked["top1"] == 0.0
    with pytest.raises(ValueError, match="one text per image"):
        ranked_among(KnownEvaluator(), showing([1, 2]), prompts[:3], CAPTIONS)
    with pytest.raises(ValueError, match="fewer than candidates"):
        ranked_among(KnownEvaluator(), showing([1]), prompts[:1], CAPTIONS[:50])


def test_the_frechet_distance_is_the_formula_computed_another_way():
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(400, 3, 32, 32, generator=generator) * 0.3
    b = torch.randn(300, 3, 32, 32, generator=generator) * 0.2 + 0.1
    fa, fb = (x.flatten(1)[:, :6].double().numpy() for x in (a, b))
    mean_a, mean_b, cov_a, cov_b = fa.mean(0), fb.mean(0), np.cov(fa.T), np.cov(fb.T)
    # $\mathrm{Tr}((C_a C_b)^{1/2}) = \sum_i \sqrt{\lambda_i(C_a C_b)}$: eigenvalues of the unsymmetric product
    trace_sqrt = np.sqrt(np.linalg.eigvals(cov_a @ cov_b).real.clip(min=0)).sum()
    expected = ((mean_a - mean_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt
    assert evaluator_frechet(KnownEvaluator(), a, b) == pytest.approx(expected, rel=1e-6)
    assert evaluator_frechet(KnownEvaluator(), a, a) == pytest.approx(0.0, abs=1e-9)


class PixelEvaluator:
    """Embeddings: the pixels as a unit vector, so the nearest image by cosine is found exactly."""

    def image_embeddings(self, images):
        x = torch.as_tensor(images, dtype=torch.float32)
        x = x.permute(0, 3, 1, 2) / 127.5 - 1 if x.shape[-1] == 3 else x
        return torch.nn.functional.normalize(x.flatten(1), dim=1)


def test_memorisation_finds_planted_copies_and_their_training_images():
    train = emoji("train").images[:300]
    others = emoji("test").images[:4]
    samples = np.concatenate([train[[7, 123]], others])  # two exact copies, four drawings never trained on
    result = memorisation(PixelEvaluator(), samples, train)
    assert result["nearest"][:2] == [7, 123]
    assert result["near_copy_share"] == pytest.approx(2 / 6, abs=1e-4)
    assert all(p < result["copy_psnr_db"] for p in result["nearest_psnr_db"][2:])


@pytest.fixture(scope="module")
def tone_reader():
    return fit_tone_reader(emoji("train"))


def test_the_tone_reader_reads_painted_faces(tone_reader):
    for i, tone in enumerate(TONES):
        for j, style in enumerate(STYLES):
            face = np.full((1, 32, 32, 3), 255, np.uint8)
            yy, xx = np.mgrid[:32, :32]
            face[0][(yy - 16) ** 2 + (xx - 16) ** 2 < 144] = tone_reader.palette[i, j].round().astype(np.uint8)
            face[0, 4:9, 8:24] = (60, 40, 20)  # hair, the same for every tone
            face[0, 13:15, 11:13] = face[0, 13:15, 19:21] = 0  # eyes
            assert tone_reader.read(face) == [tone], (tone, style)
    assert tone_reader.read(np.full((1, 32, 32, 3), 255, np.uint8)) == [""]


def test_the_tone_reader_reads_real_emoji_it_never_trained_on(tone_reader):
    every = emoji(split=None)
    heldout = every.subset((every.splits == "heldout_tone") & np.isin(every.tones, TONES))
    assert tone_accuracy(tone_reader, heldout.images, heldout.tones) >= 0.9  # measured: 95.7% of 326
    hands = every.subset(np.char.startswith(every.captions.astype(str), "waving hand: "))
    assert np.mean(np.array(tone_reader.read(hands.images)) == hands.tones) >= 0.8
    with pytest.raises(ValueError, match="uint8"):
        tone_reader.read(np.zeros((1, 3, 32, 32), np.float32))


def test_the_style_classifier_tells_flat_colour_from_texture():
    rng = np.random.default_rng(0)

    def drawings(n: int) -> tuple[np.ndarray, np.ndarray]:
        flat = np.repeat(rng.integers(0, 256, (n, 1, 1, 3)), 32, 1).repeat(32, 2)  # one colour: "twemoji"
        textured = rng.integers(0, 256, (n, 32, 32, 3))  # noise: "noto"
        return (np.concatenate([flat, textured]).astype(np.uint8),
                np.array([STYLES[1]] * n + [STYLES[0]] * n))

    images, styles = drawings(64)
    classifier = fit_style_classifier(images, styles, steps=200, batch_size=32)
    new_images, new_styles = drawings(20)
    assert classifier.accuracy(new_images, new_styles) == 1.0
