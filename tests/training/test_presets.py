"""The presets: valid training configs that round trip through JSON, and agree with the checkpoints that ship."""

import json

from minidiff.training.config import TrainConfig
from minidiff.training.presets import PRESETS


def test_presets_are_valid_and_mnist_is_class_conditional():
    assert set(PRESETS) >= {"mnist", "tiny"}
    mnist = PRESETS["mnist"]()
    assert mnist.unet.num_classes == 10 and mnist.data == "mnist5k" and 0 < mnist.class_drop_prob < 1
    assert TrainConfig.from_dict(json.loads(json.dumps(mnist.to_dict()))) == mnist
