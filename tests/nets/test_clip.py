"""The tiny CLIP: its loss against cross-entropy written out by hand, its encoders, and the retrieval metric on
cases whose answer is known."""

import math

import pytest
import torch
import torch.nn.functional as F

from minidiff.nets.clip import CLIP, CLIPConfig, clip_loss, retrieval_accuracy


def loss_by_hand(images: torch.Tensor, texts: torch.Tensor, scale: float) -> float:
    """Radford et al.'s Figure 3 in float64 loops: logits_ij = scale <I_i, T_j>; the mean over images of
    -log softmax over captions of the right one, and the same over captions; then their mean."""
    b = len(images)
    logits = [[scale * sum(images[i, k].item() * texts[j, k].item() for k in range(images.shape[1]))
               for j in range(b)] for i in range(b)]
    rows = sum(-logits[i][i] + math.log(sum(math.exp(logits[i][j]) for j in range(b))) for i in range(b)) / b
    cols = sum(-logits[j][j] + math.log(sum(math.exp(logits[i][j]) for i in range(b))) for j in range(b)) / b
    return (rows + cols) / 2


def test_the_loss_is_cross_entropy_over_the_similarity_matrix():
    generator = torch.Generator().manual_seed(0)
    images = F.normalize(torch.randn(5, 3, generator=generator, dtype=torch.float64), dim=1)
    texts = F.normalize(torch.randn(5, 3, generator=generator, dtype=torch.float64), dim=1)
    t = torch.tensor(math.log(1 / 0.07), dtype=torch.float64)
    assert clip_loss(images, texts, t).item() == pytest.approx(loss_by_hand(images, texts, 1 / 0.07), rel=1e-12)
    too_sharp = torch.tensor(math.log(1000.0), dtype=torch.float64)  # e^t is clipped to 100, as in CLIP
    assert clip_loss(images, texts, too_sharp).item() == pytest.approx(loss_by_hand(images, texts, 100.0), rel=1e-12)


def test_the_loss_knows_right_from_wrong_pairs():
    same = F.normalize(torch.randn(8, 4), dim=1)
    assert clip_loss(same, same.clone(), torch.tensor(0.0)).item() < clip_loss(same, same.roll(1, 0),
                                                                             torch.tensor(0.0)).item()
    alike = F.normalize(torch.ones(8, 4), dim=1)  # every pair equally similar: chance, log B
    assert clip_loss(alike, alike, torch.tensor(2.0)).item() == pytest.approx(math.log(8), rel=1e-6)
    with pytest.raises(ValueError, match="both be"):
        clip_loss(same, same[:, :3], torch.tensor(0.0))


def tiny_clip() -> CLIP:
    torch.manual_seed(0)
    return CLIP(CLIPConfig(vocabulary_size=50, length=6, text_dim=16, text_layers=1, heads=2, channels=(8, 16),
                           groups=4, embed_dim=8))


def test_the_encoders_give_unit_vectors_that_depend_on_their_input():
    model = tiny_clip()
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    tokens = torch.tensor([[1, 5, 6, 0, 0, 0], [1, 7, 0, 0, 0, 0], [1, 5, 6, 9, 0, 0]])
    image_embeddings, text_embeddings = model.encode_image(images), model.encode_text(tokens)
    assert image_embeddings.shape == text_embeddings.shape == (3, 8)
    assert torch.allclose(image_embeddings.norm(dim=1), torch.ones(3))
    assert torch.allclose(text_embeddings.norm(dim=1), torch.ones(3))
    assert not torch.allclose(text_embeddings[0], text_embeddings[2]), "one more token changes the caption's vector"
    alone = model.encode_image(images[1:2])
    assert torch.allclose(alone, image_embeddings[1:2], atol=1e-6), "an image's vector does not depend on its batch"
    assert model.temperature() == pytest.approx(0.07)
    assert model(images, tokens).item() == pytest.approx(
        clip_loss(image_embeddings, text_embeddings, model.logit_scale).item(), rel=1e-6)
    with pytest.raises(ValueError, match="images must be"):
        model.encode_image(torch.zeros(3, 1, 32, 32))
    with pytest.raises(ValueError, match="groups"):
        CLIPConfig(vocabulary_size=50, channels=(8, 12), groups=8)


def ranked_case(n_images: int, m: int, beaten: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Similarities where image i's own caption is beaten by exactly beaten[i] of the other m - 1 captions."""
    truth = torch.arange(n_images) % m
    others = torch.arange(m)[None, :] != truth[:, None]  # (N, m)
    beating = others & (others.cumsum(dim=1) <= beaten[:, None])  # the first beaten[i] other captions
    similarity = 0.9 * beating.float()  # (N, m)
    similarity[torch.arange(n_images), truth] = 0.5
    return similarity, truth


def test_retrieval_with_every_caption_as_a_candidate_is_the_rank():
    beaten = torch.tensor([0, 0, 1, 4, 5, 30])
    similarity, truth = ranked_case(6, 100, beaten)
    scores = retrieval_accuracy(similarity, truth, candidates=100)
    assert scores["top1"] == pytest.approx(2 / 6) and scores["top5"] == pytest.approx(4 / 6)
    tie = similarity.clone()
    tie[0, 1 if truth[0] != 1 else 2] = 0.5  # a caption as similar as the right one counts against it
    assert retrieval_accuracy(tie, truth, candidates=100)["top1"] == pytest.approx(1 / 6)


def test_retrieval_among_sampled_candidates_follows_the_hypergeometric_law():
    """With 99 of 299 other captions drawn, a caption beaten by 3 of them stays first with probability
    C(296, 99) / C(299, 99), and stays in the top five always."""
    beaten = torch.full((4000,), 3)
    similarity, truth = ranked_case(4000, 300, beaten)
    scores = retrieval_accuracy(similarity, truth, candidates=100, generator=torch.Generator().manual_seed(0))
    expected = math.comb(296, 99) / math.comb(299, 99)  # about 0.30
    assert scores["top1"] == pytest.approx(expected, abs=0.025) and scores["top5"] == 1.0
    with pytest.raises(ValueError, match="candidates between 2 and M"):
        retrieval_accuracy(similarity, truth, candidates=301)
