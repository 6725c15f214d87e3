"""Training the tiny CLIP in the one training loop: the loss falls, the checkpoint holds the measured retrieval and
loads back, a batch never holds one caption twice, and the command line drives it."""

import json

import numpy as np
import pytest
import torch

from minidiff.__main__ import main
from minidiff.data.emoji import TONES, emoji
from minidiff.nets.bpe import emoji_tokenizer
from minidiff.nets.clip import CLIPConfig
from minidiff.training.clip import (
    CLIP_PRESETS,
    batch_captions,
    composition_accuracy,
    load_clip,
    measure_retrieval,
    run_clip,
    train_clip,
)
from minidiff.training.run import saved_training_state


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip")
    config = CLIP_PRESETS["tiny"]()
    config.steps = 30
    metrics = train_clip(config, folder, device="cpu", command="test", progress=False)
    return folder, metrics


def test_a_tiny_run_lowers_the_loss(tiny_run):
    folder, _ = tiny_run
    losses = saved_training_state(folder).loss_history
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.2, "the loss falls from about log(32) = 3.47"


def test_the_checkpoint_holds_retrieval_and_loads_back(tiny_run):
    folder, metrics = tiny_run
    meta = json.loads((folder / "clip.json").read_text())
    assert meta["metrics"] == metrics and meta["step"] == 30 and meta["kind"] == "clip"
    for split in ("test", "heldout_tone", "heldout_style"):
        for kind in ("styled", "plain"):
            scores = metrics[f"{split}_{kind}"]
            assert 0.0 <= scores["top1"] <= scores["top5"] <= 1.0
            assert scores["images"] == int((emoji(split=None).splits == split).sum())
    compositions = metrics["compositions"]
    assert set(compositions) == {"tone_heldout", "tone_test", "style_heldout", "style_test"}
    assert compositions["tone_heldout"]["images"] == 326 and compositions["style_heldout"]["images"] == 95
    model, _ = load_clip(folder / "clip")
    tokens = emoji_tokenizer().encode_batch(["fox in noto style"], model.config.length)
    assert model.encode_text(tokens).shape == (1, model.config.embed_dim)
    with pytest.raises(ValueError, match="not a CLIP checkpoint"):
        from minidiff.files.checkpoint import write_tensors_and_json

        write_tensors_and_json(folder / "other", {"w": torch.zeros(1)}, {"kind": "unet"})
        load_clip(folder / "other")


def test_a_batch_never_holds_one_caption_twice():
    data = emoji("train")
    fox = np.flatnonzero(data.captions == data.captions[0])  # the same emoji in both styles, if both are trained
    index = np.array([fox[0], fox[-1], 5, 6])
    captions = batch_captions(data, index, plain=np.array([True, True, True, False]))
    assert len(set(captions)) == 4
    assert captions[0] == data.captions[fox[0]] and captions[2] == data.captions[5]
    assert captions[3] == f"{data.captions[6]} in {data.sources[6]} style"
    if len(fox) == 2:
        assert captions[1] == f"{data.captions[fox[1]]} in {data.sources[fox[1]]} style"


def test_the_command_trains_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "clip"
    main(["train-clip", "--preset", "tiny", "--out", str(out), "--steps", "2", "--quiet", "--device", "cpu"])
    assert "zero-shot retrieval" in capsys.readouterr().out
    assert "--preset tiny --seed 0 --steps 2" in json.loads((out / "clip.json").read_text())["command"]
    with pytest.raises(SystemExit, match="minidiff train-clip: .* already holds a run"):
        main(["train-clip", "--preset", "tiny", "--out", str(out), "--steps", "2", "--quiet"])


def test_a_resumed_run_is_the_uninterrupted_run(tmp_path):
    config = CLIP_PRESETS["tiny"]()
    cpu = torch.device("cpu")
    config.steps = 8
    run_clip(config, tmp_path / "straight", False, cpu, "", progress=False)
    config.steps = 4
    run_clip(config, tmp_path / "resumed", False, cpu, "", progress=False)
    config.steps = 8
    run_clip(config, tmp_path / "resumed", True, cpu, "", progress=False)
    straight, resumed = (saved_training_state(tmp_path / name) for name in ("straight", "resumed"))
    assert resumed.loss_history == straight.loss_history
    assert all(torch.equal(resumed.model[name], weight) for name, weight in straight.model.items())


class ToneReader:
    """A stand-in CLIP whose text vectors are one-hot in the tone a caption names, and whose image vectors are
    one-hot in a tone we choose: the tone part of composition_accuracy must then score what we chose."""

    def __init__(self, image_tones: list[str]):
        self.config, self.tokenizer = CLIPConfig(vocabulary_size=len(emoji_tokenizer())), emoji_tokenizer()
        self.image_tones = image_tones

    def eval(self):
        return self

    def train(self):
        return self

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        vectors = torch.zeros(len(images), len(TONES) + 1)
        if len(images) == len(self.image_tones):  # the tone images; the style images all get the last axis
            vectors[torch.arange(len(images)), [TONES.index(t) for t in self.image_tones]] = 1.0
        return vectors

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        captions = [self.tokenizer.decode(row) for row in tokens.tolist()]
        named = [next((i for i, t in enumerate(TONES) if f" {t} skin tone" in f" {c}"), len(TONES)) for c in captions]
        return torch.nn.functional.one_hot(torch.tensor(named), len(TONES) + 1).float()


def test_composition_accuracy_scores_what_the_encoders_read():
    every = emoji(split=None)
    held = every.tones[(every.splits == "heldout_tone")]
    wrong = [TONES[(TONES.index(t) + 1) % 5] for t in held]
    read = [t if i % 4 else w for i, (t, w) in enumerate(zip(held, wrong))]  # every fourth tone read wrong
    results = composition_accuracy(ToneReader(read), emoji_tokenizer(), every, torch.device("cpu"))
    assert results["tone_heldout"] == {"accuracy": round(sum(i % 4 != 0 for i in range(len(held))) / len(held), 4),
                                       "images": len(held)}


@pytest.mark.parametrize("name", ["emoji_clip", "emoji_evaluator"])
def test_a_shipped_clip_retrieves_as_its_json_records(name):
    """The two shipped CLIPs: measured again here, retrieval agrees with the figures in their JSON (within one image
    of the smallest split: float rounding may swap two near-equal candidates), and they are different networks."""
    model, meta = load_clip(name)
    assert meta["command"].startswith("python -m minidiff train-clip") and meta["seed"] == {"emoji_clip": 0,
                                                                                           "emoji_evaluator": 1}[name]
    measured = measure_retrieval(model, emoji_tokenizer(), emoji(split=None), torch.device("cpu"), 100, meta["seed"])
    for key, recorded in meta["metrics"].items():
        if key != "compositions":
            assert measured[key]["images"] == recorded["images"]
            for top in ("top1", "top5"):
                assert abs(measured[key][top] - recorded[top]) <= 1.01 / recorded["images"], (key, top)
    assert measured["test_styled"]["top5"] > 0.5  # far above chance (5 %)
