"""The presets: valid training configs that round trip through JSON, and agree with the checkpoints that ship."""

import json

import pytest

from minidiff.models import load_checkpoint
from minidiff.training.config import TrainConfig
from minidiff.training.presets import PRESETS


def test_presets_are_valid_and_mnist_is_class_conditional():
    assert set(PRESETS) >= {"mnist", "tiny"}
    mnist = PRESETS["mnist"]()
    assert mnist.unet.num_classes == 10 and mnist.data == "mnist5k" and 0 < mnist.class_drop_prob < 1
    assert TrainConfig.from_dict(json.loads(json.dumps(mnist.to_dict()))) == mnist


@pytest.mark.parametrize("name", ["mnist", "shapes_latent", "shapes_text"])
def test_shipped_checkpoints_store_the_prediction_once_and_agree_with_their_preset(name):
    _, info = load_checkpoint(name)
    assert "prediction" not in info.model  # the network's config holds no diffusion setting
    assert info.diffusion_config() == PRESETS[name]().diffusion


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_round_trips_through_json(name):
    config = PRESETS[name]()
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_the_dit_preset_is_shapes_text_with_another_network():
    dit, unet = PRESETS["shapes_text_dit"]().to_dict(), PRESETS["shapes_text"]().to_dict()
    assert dit["unet"] is None and unet["dit"] is None and dit["dit"]["context_dim"] == unet["unet"]["context_dim"]
    assert {k: v for k, v in dit.items() if k not in ("unet", "dit")} == \
        {k: v for k, v in unet.items() if k not in ("unet", "dit")}
