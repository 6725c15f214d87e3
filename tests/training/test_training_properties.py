"""Properties of training's random draws and its weight average, checked over many draws against their definitions:
every timestep is trained, conditions are dropped at the configured rate for every kind of condition, and the EMA
follows its decay schedule step by step. (Each of these once let a plausible mistake through every other test.)"""

import copy
from types import SimpleNamespace

import pytest
import torch
from support.tiny import tiny_text_encoder, tiny_train_config

from minidiff.diffusion.schedule import make_schedule
from minidiff.nets.conditioning import EncoderConfig
from minidiff.nets.text import PAD, START
from minidiff.training.loop import conditioning_inputs, diffusion_loss
from minidiff.training.run import ema_decay, optimizer_step, start_run


class TimestepRecorder(torch.nn.Module):
    """A stand-in network that answers zeros and remembers every timestep it is asked about."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x_t, t, **condition):
        self.seen.append(t.clone())
        return torch.zeros_like(x_t)


def test_training_draws_every_timestep_from_0_to_T_minus_1_uniformly():
    """DDPM, Algorithm 1: t ~ Uniform{0, ..., T-1}. T = 100 and 6400 draws: every t is drawn (a missing one has
    probability 100 * 0.99^6400 ~ 1e-26), none outside, and each about 64 times."""
    config = tiny_train_config()
    schedule = make_schedule(config.diffusion.schedule, config.diffusion.T)
    recorder = TimestepRecorder()
    run = SimpleNamespace(config=config, generator=torch.Generator().manual_seed(0), model=recorder,
                          forward_model=recorder)
    for _ in range(100):
        diffusion_loss(run, schedule, torch.zeros(64, 1, 4, 4), torch.zeros(64, dtype=torch.long), "cpu")
    t = torch.cat(run.model.seen)
    counts = torch.bincount(t, minlength=config.diffusion.T)
    assert t.min() == 0 and t.max() == config.diffusion.T - 1 and len(counts) == config.diffusion.T
    assert (counts > 0).all() and counts.max() < 64 * 2  # uniform: none drawn twice as often as its share


def dropped_share(config, conditions: torch.Tensor, draws: int = 40) -> float:
    """The share of conditions that conditioning_inputs replaces by the null one (class) or the empty prompt."""
    generator, dropped = torch.Generator().manual_seed(0), []
    for _ in range(draws):
        inputs = conditioning_inputs(config, conditions, generator, "cpu")
        if "class_labels" in inputs:
            dropped.append(inputs["class_labels"] == config.unet.num_classes)
        else:
            dropped.append((inputs["tokens"][:, 1:] == PAD).all(dim=1))
    return torch.cat(dropped).float().mean().item()


@pytest.mark.parametrize("drop", [0.1, 0.3])
@pytest.mark.parametrize("condition", ["class", "attributes", "text"])
def test_conditions_are_dropped_at_the_configured_rate_for_every_kind_of_condition(condition, drop):
    """Ho & Salimans 2022, Algorithm 1: each condition becomes the null one with probability class_drop_prob.
    20 000 draws: the share is within 0.01 of it (5 standard deviations at p = 0.3)."""
    if condition == "class":
        config = tiny_train_config(class_drop_prob=drop)
        conditions = torch.arange(500) % 10  # (500,) labels 0 ... 9
    else:
        encoder = EncoderConfig(kind="attributes") if condition == "attributes" else tiny_text_encoder()
        config = tiny_train_config(class_drop_prob=drop, token_drop_prob=0.0, encoder=encoder)
        conditions = torch.full((500, encoder.length), 3)  # (500, L) some word in every place
        conditions[:, 0] = START
    assert abs(dropped_share(config, conditions) - drop) < 0.01


def test_single_words_are_dropped_at_the_configured_rate_and_the_start_token_never():
    config = tiny_train_config(class_drop_prob=0.0, token_drop_prob=0.2, encoder=tiny_text_encoder())
    conditions = torch.full((2000, config.encoder.length), 3)
    conditions[:, 0] = START
    tokens = conditioning_inputs(config, conditions, torch.Generator().manual_seed(0), "cpu")["tokens"]
    assert (tokens[:, 0] == START).all()
    assert abs((tokens[:, 1:] == PAD).float().mean().item() - 0.2) < 0.01


def test_ema_decay_warms_up_as_its_formula_says():
    """min(decay, (1 + k) / (10 + k)) at step k: 0.1 at the first step, the configured decay once it is reached."""
    config = tiny_train_config(ema_decay=0.99)
    for step in range(0, 2000, 7):
        assert ema_decay(config, step) == min(0.99, (1 + step) / (10 + step))
    assert ema_decay(config, 0) == pytest.approx(0.1) and ema_decay(config, 1500) == 0.99


def test_the_ema_weights_follow_the_decay_schedule_step_by_step():
    """optimizer_step's EMA, against the average computed by hand with the warm-up decays."""
    config = tiny_train_config(ema_decay=0.9, warmup_steps=1, grad_clip=1e9)
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    run = start_run(config, model, torch.device("cpu"), "test", keep_ema=True)
    expected = copy.deepcopy(model.weight.detach())
    x = torch.randn(8, 3)
    for step in range(30):
        optimizer_step(run, lambda rows: model(x[rows]).pow(2).mean())
        decay = min(0.9, (1 + step) / (10 + step))
        # $\theta_{ema} \leftarrow \delta_k \theta_{ema} + (1 - \delta_k) \theta_{k+1}$
        expected = decay * expected + (1 - decay) * model.weight.detach()
    torch.testing.assert_close(run.ema.weight, expected, rtol=1e-5, atol=1e-7)


class InputRecorder(torch.nn.Module):
    """A stand-in network that answers zeros and remembers what it was asked: x_t and t."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x_t, t, **condition):
        self.calls.append((x_t.clone(), t.clone()))
        return torch.zeros_like(x_t)


def test_the_loss_weights_each_image_by_min_snr_gamma():
    """With x0 = 0, x_t = sqrt(1 - alpha_bar_t) eps, so the network's inputs give away each image's target eps; a
    network answering 0 makes each image's error mean(eps^2), and the loss is the mean of min(SNR, 5) / SNR times that
    (Hang et al. 2023, written out in float64)."""
    config = tiny_train_config(min_snr_gamma=5.0)
    assert config.diffusion.prediction == "eps"
    schedule = make_schedule(config.diffusion.schedule, config.diffusion.T)
    recorder = InputRecorder()
    run = SimpleNamespace(config=config, generator=torch.Generator().manual_seed(0), model=recorder,
                          forward_model=recorder)
    loss = diffusion_loss(run, schedule, torch.zeros(64, 1, 4, 4), torch.zeros(64, dtype=torch.long), "cpu")
    (x_t, t), = run.model.calls
    alpha_bar = schedule.alpha_bar.double()[t]
    eps = x_t.double() / (1 - alpha_bar).sqrt()[:, None, None, None]
    snr = alpha_bar / (1 - alpha_bar)
    expected = (snr.clamp(max=5.0) / snr * eps.pow(2).mean(dim=(1, 2, 3))).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
