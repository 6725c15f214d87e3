"""Training states: every tensor, the optimizer and every random generator round trip bit for bit."""

import json
import random

import numpy as np
import torch
from support.checkpoints import CONFIG, assert_same_tensors, trained_model_and_optimizer

from minidiff.files.training_state import (
    TrainingState,
    capture_rng_states,
    load_training_state,
    restore_rng_states,
    save_training_state,
)
from minidiff.nets.unet import UNet


def test_training_state_round_trips_bit_for_bit(tmp_path):
    model, optimizer = trained_model_and_optimizer()
    ema = UNet(CONFIG)
    rng_tensors, rng_rest = capture_rng_states()
    state = TrainingState(step=3, model=model.state_dict(), ema=ema.state_dict(), optimizer=optimizer.state_dict(),
                          rng_tensors=rng_tensors, rng_rest=rng_rest,
                          data_generator=torch.Generator().manual_seed(5).get_state(), data_order=torch.randperm(64),
                          loss_history=[0.9, 0.1 + 0.2, 1 / 3], training_minutes=0.25,
                          config={"any": "json"}, command="python -m minidiff train")
    save_training_state(tmp_path / "train_state", state)
    loaded = load_training_state(tmp_path / "train_state")

    assert_same_tensors(loaded.model, state.model)
    assert_same_tensors(loaded.ema, state.ema)
    assert_same_tensors(loaded.rng_tensors, state.rng_tensors)
    assert torch.equal(loaded.data_generator, state.data_generator) and torch.equal(loaded.data_order, state.data_order)
    assert loaded.loss_history == state.loss_history  # exact floats
    assert (loaded.step, loaded.training_minutes) == (3, 0.25)
    assert (loaded.config, loaded.command) == ({"any": "json"}, state.command)
    assert loaded.rng_rest == json.loads(json.dumps(state.rng_rest))
    # the optimizer: same hyper-parameters (tuples included) and the same moments, bit for bit
    expected = optimizer.state_dict()
    assert loaded.optimizer["param_groups"] == expected["param_groups"]
    assert loaded.optimizer["state"].keys() == expected["state"].keys()
    for index in expected["state"]:
        assert_same_tensors(loaded.optimizer["state"][index], expected["state"][index])
    fresh = torch.optim.AdamW(UNet(CONFIG).parameters())
    fresh.load_state_dict(loaded.optimizer)  # torch accepts it
    assert fresh.param_groups[0]["betas"] == (0.9, 0.99)


def test_rng_states_restore_every_generator():
    tensors, rest = capture_rng_states()
    first = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    restore_rng_states(tensors, rest)
    second = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1]) and first[2] == second[2]
