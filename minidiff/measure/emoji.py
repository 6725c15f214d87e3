r"""Measuring a text-to-emoji model with a second CLIP, the evaluator, which the generator never used.

Papers followed:
- Xu et al. 2018, "AttnGAN", sec. 4.1: R-precision. For each generated image, its prompt and R - 1 = 99 other
  captions drawn at random are ranked by the evaluator's image-text similarity; the share of images whose prompt
  ranks first. Measured beside the same figure for real images of the same captions, which is what a perfect
  generator would score with this evaluator (`r_precision`).
- Heusel et al. 2017, eq. 6: the Fréchet distance between Gaussians fitted to image features, here the evaluator's
  image encoder (its pooled features, before the projection into the shared space; `evaluator_frechet`, the
  formula in `minidiff.measure.metrics`). Numbers compare only with numbers from the same evaluator and the same n.
- Memorisation (Carlini et al. 2023, "Extracting Training Data from Diffusion Models", sec. 4, measure copies by
  distance to the nearest training image): each sample's nearest training image by the evaluator's cosine
  similarity, and a *near-copy* when that image is also close in pixels, PSNR >= `COPY_PSNR` dB (`memorisation`).

`Evaluator` wraps a CLIP checkpoint and its tokenizer; anything with the same three methods (`image_features`,
`image_embeddings`, `text_embeddings`) can stand in for it, as the tests' evaluators with a known ranking do.
What a whole evaluation measures, prompt sets and all, is `minidiff.measure.emoji_report`.
"""

from collections.abc import Sequence

import numpy as np
import torch

from minidiff.data.pixels import to_model
from minidiff.measure.metrics import frechet_distance
from minidiff.models import load_clip
from minidiff.nets.autoencoder import psnr
from minidiff.nets.bpe import BPETokenizer, emoji_tokenizer
from minidiff.nets.clip import CLIP, retrieval_accuracy

BATCH = 500  # images or captions per forward pass: bounds memory, not results
COPY_PSNR = 25.0  # dB: a sample this close in pixels to its nearest training image is a near-copy (RMS error 5.6%)


def model_images(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (N, 32, 32, 3) or floats (N, 3, 32, 32) in [-1, 1] -> floats (N, 3, 32, 32) in [-1, 1], on the CPU."""
    if isinstance(images, np.ndarray) and images.dtype == np.uint8:
        images = to_model(images)  # (N, 32, 32, 3) -> (N, 3, 32, 32)
    images = torch.as_tensor(images).float().cpu()
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 (N, H, W, 3) or floats (N, 3, H, W) in [-1, 1], got "
                         f"{images.dtype} {tuple(images.shape)}")
    return images.clamp(-1, 1)


class Evaluator:
    """The evaluator CLIP and its tokenizer: image features, unit image and caption embeddings, in batches."""

    def __init__(self, clip: CLIP, tokenizer: BPETokenizer | None = None, sha256: str = ""):
        self.clip, self.tokenizer, self.sha256 = clip.eval(), tokenizer or emoji_tokenizer(), sha256
        self.device = next(clip.parameters()).device

    @classmethod
    def load(cls, name_or_path, device: torch.device | str = "cpu") -> "Evaluator":
        """The CLIP checkpoint by shipped name ("emoji_evaluator"), train-clip run folder or path."""
        clip, meta = load_clip(name_or_path, device)
        return cls(clip, emoji_tokenizer(), meta["tensors_sha256"])

    @torch.inference_mode()
    def image_features(self, images) -> torch.Tensor:
        """Images -> the image encoder's pooled features (N, C): what the Fréchet distance compares."""
        batches = model_images(images).split(BATCH)
        return torch.cat([self.clip.image_encoder(batch.to(self.device)).cpu() for batch in batches])

    @torch.inference_mode()
    def image_embeddings(self, images) -> torch.Tensor:
        """Images -> unit vectors in the shared space (N, embed_dim)."""
        batches = model_images(images).split(BATCH)
        return torch.cat([self.clip.encode_image(batch.to(self.device)).cpu() for batch in batches])

    @torch.inference_mode()
    def text_embeddings(self, captions: Sequence[str]) -> torch.Tensor:
        """Captions -> unit vectors in the shared space (M, embed_dim)."""
        captions = list(captions)
        chunks = [captions[i:i + BATCH] for i in range(0, len(captions), BATCH)]
        length = self.clip.config.length
        return torch.cat([self.clip.encode_text(self.tokenizer.encode_batch(chunk, length).to(self.device)).cpu()
                          for chunk in chunks])


def ranked_among(evaluator, images, truths: Sequence[str], pool: Sequence[str], candidates: int = 100,
                 seed: int = 0) -> dict[str, float]:
    """For each image, its own text (truths[i]) and candidates - 1 others drawn at random from the distinct texts of
    `pool` (its own left out): how often its own ranks first and among the first five by the evaluator's cosine
    similarity (ties count against it). Returns {"top1", "top5", "candidates", "images"}."""
    if len(truths) != len(images):
        raise ValueError(f"give one text per image: {len(truths)} texts for {len(images)} images")
    texts = sorted(set(pool) | set(truths))
    if len(texts) < candidates:
        raise ValueError(f"the pool holds {len(texts)} distinct texts, fewer than candidates = {candidates}")
    index = {text: i for i, text in enumerate(texts)}
    similarity = evaluator.image_embeddings(images) @ evaluator.text_embeddings(texts).T  # (N, D) @ (D, M) -> (N, M)
    truth = torch.tensor([index[text] for text in truths])  # (N,)
    scores = retrieval_accuracy(similarity, truth, candidates, torch.Generator().manual_seed(seed))
    return {"top1": round(scores["top1"], 4), "top5": round(scores["top5"], 4), "candidates": candidates,
            "images": len(truths)}


def r_precision(evaluator, generated, real, prompts: Sequence[str], pool: Sequence[str], candidates: int = 100,
                seed: int = 0) -> dict[str, float]:
    """R-precision (Xu et al. 2018) of generated images (one per prompt) and of real images of the same captions,
    the same distractors for both (the same seed): {"generated", "real", "ratio"}, ratio = generated / real."""
    generated_top1 = ranked_among(evaluator, generated, prompts, pool, candidates, seed)["top1"]
    real_top1 = ranked_among(evaluator, real, prompts, pool, candidates, seed)["top1"]
    return {"generated": generated_top1, "real": real_top1, "candidates": candidates, "images": len(prompts),
            "ratio": round(generated_top1 / real_top1, 4) if real_top1 > 0 else None}


def evaluator_frechet(evaluator, images_a, images_b) -> float:
    """The Fréchet distance between two image sets in the evaluator's feature space (Heusel et al. 2017, eq. 6)."""
    return frechet_distance(evaluator.image_features(images_a), evaluator.image_features(images_b))


def nearest_training_images(evaluator, samples, train_images, chunk: int = 1000) -> tuple[torch.Tensor,
                                                                                        torch.Tensor]:
    """For each sample, the index of its nearest training image by the evaluator's cosine similarity, and that
    similarity: (N,) int64 and (N,) float."""
    samples = evaluator.image_embeddings(samples)  # (N, D)
    best = torch.full((len(samples),), -2.0)
    index = torch.zeros(len(samples), dtype=torch.long)
    for start in range(0, len(train_images), chunk):
        train = evaluator.image_embeddings(train_images[start:start + chunk])  # (n, D)
        similarity, nearest = (samples @ train.T).max(dim=1)  # (N, n) -> (N,), (N,)
        better = similarity > best
        best[better], index[better] = similarity[better], nearest[better] + start
    return index, best


def memorisation(evaluator, samples, train_images: np.ndarray, copy_psnr: float = COPY_PSNR) -> dict:
    """Each sample's nearest training image (evaluator features) and how close it is in pixels; the share of
    near-copies (PSNR >= copy_psnr dB). train_images: uint8 (M, 32, 32, 3)."""
    index, similarity = nearest_training_images(evaluator, samples, train_images)
    pixels = psnr(model_images(samples), model_images(train_images[index.numpy()]))  # (N,) dB
    return {"near_copy_share": round((pixels >= copy_psnr).float().mean().item(), 4), "copy_psnr_db": copy_psnr,
            "mean_nearest_similarity": round(similarity.mean().item(), 4),
            "mean_nearest_psnr_db": round(pixels.mean().item(), 2), "nearest": index.tolist(),
            "nearest_psnr_db": [round(p, 2) for p in pixels.tolist()]}
