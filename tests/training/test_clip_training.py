"""Training the tiny CLIP in the one training loop: the loss falls, the checkpoint holds the measured retrieval and
loads back, a batch never holds one caption twice, and the command line drives it."""

import json

import numpy as np
import pytest
import torch

from minidiff.__main__ import main
from minidiff.data.emoji import emoji
from minidiff.nets.bpe import emoji_tokenizer
from minidiff.training.clip import CLIP_PRESETS, batch_captions, load_clip, train_clip
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
