"""Training the tiny CLIP (minidiff.nets.clip) on emoji and their captions: `python -m minidiff train-clip`, in the
same loop as every model (`minidiff.training.run.train_loop`).

    python -m minidiff train-clip --preset emoji --seed 0 --out runs/clip0 --minutes 15 --threads 1

Each step draws a batch of distinct training images, each with its caption, plain ("fox") or styled ("fox in
twemoji style") at random; a plain caption met twice in one batch (the two styles of one emoji) is styled the
second time, so that every row of the similarity matrix has exactly one right caption. The run folder holds the
training state (exact resume, as every run) and, when the run ends, clip.json + clip.safetensors: the weights,
their config and the zero-shot retrieval measured on the test images and on both held-out compositions, and how
often the held-out part of a composition (the skin tone, the style) is read right among the hardest candidates.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from minidiff.data.emoji import STYLES, TONES, Emoji, emoji, styled
from minidiff.data.pixels import to_model
from minidiff.files.checkpoint import write_tensors_and_json
from minidiff.files.device import resolve_device
from minidiff.models import load_clip  # noqa: F401 (read here by the tests and chapter 14)
from minidiff.nets.bpe import BPETokenizer, emoji_tokenizer
from minidiff.nets.clip import CLIP, CLIPConfig, retrieval_accuracy
from minidiff.training.config import LoopConfig
from minidiff.training.run import (
    Run,
    optimizer_step,
    restore_run,
    save_state,
    saved_training_state,
    start_run,
    train_loop,
)

EVALUATED = ("test", "heldout_tone", "heldout_style")  # the splits whose retrieval is measured


@dataclass
class CLIPTrainConfig(LoopConfig):
    """Every setting of a CLIP run: the loop's (LoopConfig, with these defaults) and its own."""

    clip: CLIPConfig = field(default_factory=lambda: CLIPConfig(vocabulary_size=len(emoji_tokenizer())))
    plain_caption_prob: float = 0.5  # the share of captions given without their style phrase
    candidates: int = 100  # captions each test image's own caption is ranked among
    batch_size: int = 256  # CLIP's loss sees B - 1 wrong captions per image: larger batches, harder negatives
    lr: float = 1e-3
    weight_decay: float = 0.0  # the one loop decays every weight, the learnt temperature too: none, so it is free
    warmup_steps: int = 100
    decay_steps: int | None = 3000
    steps: int | None = 3000
    minutes: float | None = None
    checkpoint_every_minutes: float | None = 5.0

    def __post_init__(self):
        if isinstance(self.clip, dict):
            self.clip = CLIPConfig.from_dict(self.clip)
        if not 0.0 <= self.plain_caption_prob <= 1.0:
            raise ValueError(f"plain_caption_prob must be in [0, 1], got {self.plain_caption_prob}")
        super().__post_init__()  # the loop's own settings
        if self.accumulate != 1:
            raise ValueError("accumulate must be 1 for CLIP: its loss compares every image with every caption of the "
                             "batch, and micro-batches would compare fewer (a smaller, easier loss)")


def emoji_clip_config() -> CLIPTrainConfig:
    """The emoji CLIP: a 3-block, 128-wide text transformer, a 32-64-128 conv image encoder, a 128-d space
    (1.0M parameters). On a shared 2-core CPU a step of 256 pairs takes about 3 s: 15 minutes (`--minutes 15`,
    315 steps, 12 epochs) reached top-1 66% / top-5 80% on the test images among 100 styled captions."""
    return CLIPTrainConfig()


def tiny_clip_config() -> CLIPTrainConfig:
    """A run of seconds for tests: narrow encoders, small batches, 20 steps."""
    clip = CLIPConfig(vocabulary_size=len(emoji_tokenizer()), text_dim=32, text_layers=1, heads=2, channels=(8, 16),
                      groups=4, embed_dim=16)
    return CLIPTrainConfig(clip=clip, batch_size=32, lr=3e-3, warmup_steps=5, decay_steps=None, steps=20,
                           checkpoint_every_minutes=None)


CLIP_PRESETS = {"emoji": emoji_clip_config, "tiny": tiny_clip_config}


def batch_captions(data: Emoji, index: np.ndarray, plain: np.ndarray) -> list[str]:
    """The captions of images `index`: plain where `plain` is True, styled otherwise; a plain caption already
    used in this batch is styled instead, so no caption is right for two images."""
    captions, used = [], set()
    for i, want_plain in zip(index.tolist(), plain.tolist()):
        caption = str(data.captions[i])
        if not want_plain or caption in used:
            caption = f"{caption} in {data.sources[i]} style"
        used.add(caption)
        captions.append(caption)
    return captions


def clip_step(run: Run, data: Emoji, images: torch.Tensor, tokenizer: BPETokenizer,
              device: torch.device) -> dict[str, str]:
    """One optimizer step on a batch of distinct images drawn at random, each with one caption."""
    config = run.config
    index = torch.randperm(len(images), generator=run.generator)[: config.batch_size]  # (B,) no image twice
    plain = torch.rand(len(index), generator=run.generator) < config.plain_caption_prob  # (B,)
    tokens = tokenizer.encode_batch(batch_captions(data, index.numpy(), plain.numpy()), config.clip.length)
    # the contrastive loss of the whole batch (one process, no micro-batches: CLIPTrainConfig, run_clip)
    value = optimizer_step(run, lambda rows: run.forward_model(images[index[rows].to(device)], tokens[rows].to(device)))
    run.losses.append(value)
    return {"loss": f"{value:.3f}", "temperature": f"{run.model.temperature():.4f}"}


@torch.inference_mode()
def embed_captions(model: CLIP, tokenizer: BPETokenizer, captions: list[str], device: torch.device) -> torch.Tensor:
    """Captions -> unit vectors (M, embed_dim), in batches."""
    chunks = [captions[i:i + 500] for i in range(0, len(captions), 500)]
    return torch.cat([model.encode_text(tokenizer.encode_batch(c, model.config.length).to(device)) for c in chunks])


@torch.inference_mode()
def measure_retrieval(model: CLIP, tokenizer: BPETokenizer, every: Emoji, device: torch.device,
                      candidates: int = 100, seed: int = 0) -> dict[str, dict[str, float]]:
    """Zero-shot retrieval on each evaluated split: each image's own caption among `candidates` drawn from every
    caption of the dataset, styled ("fox in noto style", 7,578 of them) and plain ("fox", 3,789)."""
    model.eval()
    styled = every.styled_captions()
    plain, plain_index = np.unique(every.captions, return_inverse=True)
    text = {"styled": embed_captions(model, tokenizer, styled, device),
            "plain": embed_captions(model, tokenizer, plain.tolist(), device)}
    truth = {"styled": torch.arange(len(every)), "plain": torch.as_tensor(plain_index.reshape(-1))}
    results = {}
    for split in EVALUATED:
        rows = np.flatnonzero(every.splits == split)
        images = model.encode_image(to_model(every.images[rows]).to(device))  # (n, embed_dim)
        for kind in ("styled", "plain"):
            generator = torch.Generator().manual_seed(seed)
            similarity = (images @ text[kind].T).cpu()  # (n, M)
            scores = retrieval_accuracy(similarity, truth[kind][rows], candidates, generator)
            results[f"{split}_{kind}"] = {"top1": round(scores["top1"], 4), "top5": round(scores["top5"], 4),
                                          "images": len(rows)}
    model.train()
    return results


@torch.inference_mode()
def composition_accuracy(model: CLIP, tokenizer: BPETokenizer, every: Emoji, device: torch.device) -> dict:
    """Does the CLIP read the part of a composition it never trained on? With the hardest candidates:

    - tone: each image of a person in one skin tone against its thing's five tones ("waving hand: light skin tone",
      ... "waving hand: dark skin tone"): the share where its own tone is nearest (chance: 1/5);
    - style: each image against its caption in both styles ("fox in noto style", "fox in twemoji style"): the
      share where its own style is nearer (chance: 1/2).

    Measured on the held-out compositions (heldout_tone, heldout_style) and, for comparison, on the test images.
    """
    model.eval()
    results = {}
    for name, split in (("tone_heldout", "heldout_tone"), ("tone_test", "test")):
        part = every.subset((every.splits == split) & np.isin(every.tones, TONES))
        candidates = [f"{thing}: {tone} skin tone" for thing in part.things for tone in TONES]  # (n * 5,)
        right = torch.as_tensor([TONES.index(tone) for tone in part.tones])
        results[name] = nearest_share(model, tokenizer, part, candidates, right, device)
    for name, split in (("style_heldout", "heldout_style"), ("style_test", "test")):
        part = every.subset(every.splits == split)
        candidates = [styled(caption, style) for caption in part.captions for style in STYLES]  # (n * 2,)
        right = torch.as_tensor([STYLES.index(source) for source in part.sources])
        results[name] = nearest_share(model, tokenizer, part, candidates, right, device)
    model.train()
    return results


def nearest_share(model: CLIP, tokenizer: BPETokenizer, part: Emoji, candidates: list[str], right: torch.Tensor,
                  device: torch.device) -> dict:
    """The share of images whose right candidate (of the k listed per image, in order) is the most similar."""
    images = model.encode_image(to_model(part.images).to(device))  # (n, embed_dim)
    texts = embed_captions(model, tokenizer, candidates, device).view(len(part), -1, images.shape[1])  # (n, k, dim)
    similarity = (texts @ images.unsqueeze(-1)).squeeze(-1).cpu()  # (n, k, dim) @ (n, dim, 1) -> (n, k)
    return {"accuracy": round((similarity.argmax(dim=1) == right).float().mean().item(), 4), "images": len(part)}


def save_clip(stem: Path, run: Run, device: torch.device, metrics: dict) -> None:
    """Write the weights and, beside them, their config, how they were made and what was measured."""
    meta = {"kind": "clip", "config": run.config.clip.to_dict(), "tokenizer": "data/emoji_bpe.json",
            "command": run.command, "seed": run.config.seed, "device": str(device),
            "training_minutes": round(run.minutes, 2), "step": run.step, "metrics": metrics}
    write_tensors_and_json(stem, run.model.state_dict(), meta)


def run_clip(config: CLIPTrainConfig, out: Path, resume: bool, device: torch.device, command: str,
             progress: bool) -> Run:
    """Train (or resume, then carry on) until config.steps or config.minutes, earlier sessions included; the run's
    state is saved in `out` at every checkpoint and at the end."""
    if not resume and (out / "train_state.json").exists():
        raise FileExistsError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")
    tokenizer, train = emoji_tokenizer(), emoji("train")
    if len(tokenizer) != config.clip.vocabulary_size:
        raise ValueError(f"the config's vocabulary_size {config.clip.vocabulary_size} is not the shipped "
                         f"tokenizer's {len(tokenizer)}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("train-clip runs on one process: its loss compares every pair of the batch, which a share "
                         "of the batch per process would not (start it without torchrun)")
    images = to_model(train.images).to(device)  # (N, 3, 32, 32)
    torch.manual_seed(config.seed)
    run = start_run(config, CLIP(config.clip), device, command, keep_ema=False)
    if resume:
        restore_run(run, saved_training_state(out), out)
    return train_loop(run, out, lambda run: clip_step(run, train, images, tokenizer, device),
                      lambda run: save_state(run, out), progress=progress)


def train_clip(config: CLIPTrainConfig, out: Path | str, resume: bool = False, device: str = "auto",
               command: str = "", progress: bool = True) -> dict:
    """Train (run_clip), measure retrieval and compositions, write OUT/clip.json + .safetensors. Returns what was
    measured."""
    out, device = Path(out), resolve_device(device)
    run = run_clip(config, out, resume, device, command, progress)
    tokenizer, every = emoji_tokenizer(), emoji(split=None)
    metrics = measure_retrieval(run.model, tokenizer, every, device, config.candidates, config.seed)
    metrics["compositions"] = composition_accuracy(run.model, tokenizer, every, device)
    save_clip(out / "clip", run, device, metrics)
    return metrics
