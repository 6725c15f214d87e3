"""DiffusionConfig: the diffusion settings of a model, stored once (in a training config and in a checkpoint)."""

import json

import pytest
import torch

from minidiff.diffusion.config import DiffusionConfig
from minidiff.diffusion.schedule import make_schedule


def test_round_trip_through_json_and_the_schedule_it_builds():
    config = DiffusionConfig(schedule="sigmoid", T=50, zero_terminal_snr=True, prediction="v")
    back = DiffusionConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert back == config
    assert torch.equal(back.noise_schedule().alpha_bar, make_schedule("sigmoid", 50, zero_terminal_snr=True).alpha_bar)


@pytest.mark.parametrize("bad, message", [
    (dict(schedule="quadratic"), "unknown schedule"),
    (dict(prediction="noise"), "unknown prediction"),
    (dict(T=0), "whole number >= 1"),
    (dict(T=2.5), "whole number >= 1"),
    (dict(zero_terminal_snr=True), "zero_terminal_snr needs prediction 'v' or 'x0'"),
    (dict(zero_terminal_snr=True, prediction="eps"), "an eps prediction cannot recover x0"),
])
def test_bad_settings_raise_a_clear_error(bad, message):
    with pytest.raises((ValueError, TypeError), match=message):
        DiffusionConfig(**bad)
    with pytest.raises(ValueError, match="unknown DiffusionConfig fields"):
        DiffusionConfig.from_dict({"schedul": "cosine"})
