"""DDPM sampling: the step against the posterior and against diffusers, the loop against exact denoisers, the CLI."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from minidiff.__main__ import main
from minidiff.forward import q_posterior, q_sample, x0_and_eps_from_output
from minidiff.samplers import (DenoisingStep, ddpm_step, model_denoiser, predict_x0_and_eps, sample_ddpm,
                               sampling_timesteps)
from minidiff.sample import GIF_SCALE
from minidiff.schedule import make_schedule
from minidiff.unet import UNet, UNetConfig


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and the test machine's two cores are shared by other processes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def one_point_denoiser(schedule, x_star):
    """The exact eps-denoiser when the data is one image x*: eps = (x_t - sqrt(alpha_bar) x*) / sqrt(1 - alpha_bar)."""
    def denoiser(x_t, t):
        alpha_bar = schedule.alpha_bar[t].to(x_t.dtype).reshape(-1, 1, 1, 1)  # (B,) -> (B, 1, 1, 1)
        return (x_t - alpha_bar.sqrt() * x_star) / (1 - alpha_bar).sqrt()
    return denoiser


def tiny_unet(num_classes=None):
    torch.manual_seed(0)
    config = UNetConfig(channels=(8, 16), blocks_per_level=1, attention_levels=(False, True), heads=2, groups=4,
                        num_classes=num_classes)
    return UNet(config).eval()


# ------------------------------------------------------------------ one step


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_ddpm_step_given_the_true_noise_is_the_posterior_mean(name):
    schedule = make_schedule(name, 1000)
    generator = torch.Generator().manual_seed(0)
    x0 = torch.rand((3, 1, 4, 4), generator=generator, dtype=torch.float64) * 2 - 1
    eps = torch.randn((3, 1, 4, 4), generator=generator, dtype=torch.float64)
    for t in [0, 1, 10, 250, 500, 998, 999]:
        x_t = q_sample(schedule, x0, t, eps)
        x0_hat, _ = predict_x0_and_eps(lambda x, t_batch: eps, "eps", x_t, t, float(schedule.alpha_bar[t]))
        mean = ddpm_step(x_t, x0_hat, float(schedule.alpha_bar[t]), float(schedule.alpha_bar_prev[t]))
        expected_mean, _ = q_posterior(schedule, x0, x_t, t)
        torch.testing.assert_close(mean, expected_mean, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("variance, table", [("beta_tilde", "posterior_variance"), ("beta", "betas")])
def test_ddpm_step_noise_has_the_chosen_variance(variance, table):
    schedule = make_schedule("linear", 1000)
    generator = torch.Generator().manual_seed(1)
    x_t, x0, noise = (torch.randn((2, 1, 3, 3), generator=generator, dtype=torch.float64) for _ in range(3))
    for t in [1, 100, 999]:
        args = (x_t, x0, float(schedule.alpha_bar[t]), float(schedule.alpha_bar_prev[t]))
        difference = ddpm_step(*args, noise=noise, variance=variance) - ddpm_step(*args)
        torch.testing.assert_close(difference, getattr(schedule, table)[t].sqrt() * noise, rtol=1e-9, atol=1e-12)


def test_unknown_variance_is_refused():
    with pytest.raises(ValueError, match="beta_tilde"):
        ddpm_step(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), 0.5, 0.6, torch.zeros(1, 1, 2, 2), variance="large")


# ------------------------------------------------------------------ timesteps


def test_sampling_timesteps_are_evenly_spaced_and_run_from_T_minus_1_to_0():
    assert sampling_timesteps(10) == list(range(9, -1, -1))
    assert sampling_timesteps(1000, 1) == [999]
    assert sampling_timesteps(1000, 4) == [999, 666, 333, 0]
    for steps in [2, 7, 50, 999, 1000]:
        timesteps = sampling_timesteps(1000, steps)
        assert len(timesteps) == steps and timesteps[0] == 999 and timesteps[-1] == 0
        gaps = np.diff(timesteps)
        assert (gaps < 0).all() and gaps.max() - gaps.min() <= 1  # strictly falling, even up to rounding
    for bad in [0, 1001]:
        with pytest.raises(ValueError, match="steps must lie in 1"):
            sampling_timesteps(1000, bad)


# ------------------------------------------------------------------ against diffusers


@pytest.mark.parametrize("prediction, diffusers_prediction",
                         [("eps", "epsilon"), ("x0", "sample"), ("v", "v_prediction")])
@pytest.mark.parametrize("variance, variance_type", [("beta_tilde", "fixed_small"), ("beta", "fixed_large")])
@pytest.mark.parametrize("steps", [1000, 25])
def test_sampling_matches_diffusers_ddpm_scheduler(prediction, diffusers_prediction, variance, variance_type, steps):
    from diffusers import DDPMScheduler

    schedule = make_schedule("linear", 1000)
    scheduler = DDPMScheduler(num_train_timesteps=1000, trained_betas=schedule.betas.numpy(),
                              variance_type=variance_type, prediction_type=diffusers_prediction,
                              clip_sample=True, clip_sample_range=1.0)
    scheduler.set_timesteps(timesteps=sampling_timesteps(1000, steps))

    def denoiser(x_t, t):  # any fixed function of (x_t, t) will do: both samplers read the same outputs
        return 0.6 * x_t + 0.3 * torch.sin(t.float() / 100).reshape(-1, 1, 1, 1)

    shape = (2, 1, 4, 4)
    ours = sample_ddpm(denoiser, shape, schedule, prediction, steps=steps, variance=variance, clip_x0=True,
                       generator=torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(shape, generator=generator)
    for t in scheduler.timesteps:
        output = denoiser(x, torch.full((shape[0],), int(t)))
        x = scheduler.step(output, t, x, generator=generator).prev_sample
    torch.testing.assert_close(ours, x, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------ the loop


@pytest.mark.parametrize("steps", [100, 10])
def test_exact_denoiser_of_one_image_lands_on_it_with_the_right_marginals(steps):
    """Data = one image x*. With the exact denoiser and beta_tilde, every x_t the sampler visits is distributed
    as q(x_t | x*) = N(sqrt(alpha_bar) x*, 1 - alpha_bar), and the last step lands on x*."""
    schedule = make_schedule("linear", 100)
    x_star = torch.tensor([[[[0.9, -0.5], [0.2, -1.0]]]])  # (1, 1, 2, 2)
    seen = []

    def check_marginal(step: DenoisingStep):
        alpha_bar = float(schedule.alpha_bar[step.t])
        mean = step.x_t.mean(dim=0)  # (B, 1, 2, 2) -> (1, 2, 2)
        variance = step.x_t.var(dim=0)
        # 5 standard errors of the estimates (+0.01 for x_T ~ N(0, I) instead of q(x_T | x*), whose mean is ~0.007)
        mean_tolerance = 5 * ((1 - alpha_bar) / n) ** 0.5 + 0.01
        torch.testing.assert_close(mean, alpha_bar**0.5 * x_star[0], atol=mean_tolerance, rtol=0)
        torch.testing.assert_close(variance, torch.full_like(variance, 1 - alpha_bar), rtol=5 * (2 / n) ** 0.5, atol=0)
        seen.append(step.t)

    n = 4000
    x = sample_ddpm(one_point_denoiser(schedule, x_star), (n, 1, 2, 2), schedule, "eps", steps=steps,
                    variance="beta_tilde", clip_x0=False, generator=torch.Generator().manual_seed(0),
                    callback=check_marginal)
    assert seen == sampling_timesteps(100, steps)
    torch.testing.assert_close(x, x_star.expand(n, -1, -1, -1), atol=1e-4, rtol=0)


def test_callback_sees_every_step_and_counts_network_evaluations():
    schedule = make_schedule("cosine", 50)
    model = tiny_unet(num_classes=10)
    steps = []
    x = sample_ddpm(model_denoiser(model, class_labels=torch.tensor([3, 7])), (2, 1, 8, 8), schedule, "eps", steps=12,
                    generator=torch.Generator().manual_seed(0), callback=steps.append)
    assert [s.t for s in steps] == sampling_timesteps(50, 12)
    assert [s.t_prev for s in steps] == sampling_timesteps(50, 12)[1:] + [-1]
    assert [s.nfe for s in steps] == list(range(1, 13))
    assert [s.index for s in steps] == list(range(12))
    for before, after in zip(steps, steps[1:]):
        assert torch.equal(before.x_prev, after.x_t)
    assert torch.equal(steps[-1].x_prev, x)
    for s in steps:  # the reported (x0, eps) is a consistent pair: x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps
        alpha_bar = float(schedule.alpha_bar[s.t])
        torch.testing.assert_close(alpha_bar**0.5 * s.x0 + (1 - alpha_bar) ** 0.5 * s.eps, s.x_t, atol=1e-4, rtol=1e-4)
        assert s.x0.abs().max() <= 1.0  # clipped


def test_same_seed_same_images_other_seed_other_images():
    schedule = make_schedule("linear", 40)
    denoiser = model_denoiser(tiny_unet())

    def draw(seed):
        generator = torch.Generator().manual_seed(seed)
        return sample_ddpm(denoiser, (3, 1, 8, 8), schedule, "eps", steps=8, generator=generator)

    assert torch.equal(draw(0), draw(0))
    assert not torch.allclose(draw(0), draw(1), atol=1e-3)


def test_eps_prediction_at_zero_terminal_snr_is_refused_clearly():
    schedule = make_schedule("linear", 50, zero_terminal_snr=True)
    with pytest.raises(ValueError, match="zero SNR"):
        sample_ddpm(lambda x, t: x, (1, 1, 2, 2), schedule, "eps", generator=torch.Generator().manual_seed(0))
    x_star = torch.full((1, 1, 2, 2), 0.5)
    x = sample_ddpm(lambda x_t, t: x_star.expand_as(x_t), (3, 1, 2, 2), schedule, "x0",
                    generator=torch.Generator().manual_seed(0))  # x0 prediction is fine there
    torch.testing.assert_close(x, x_star.expand(3, -1, -1, -1))


def test_x0_and_eps_agree_with_forward_conversions():
    """The loop reads outputs through minidiff.forward, the same function training's targets come from."""
    schedule = make_schedule("cosine", 100)
    x_t = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    output = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    for prediction in ["eps", "x0", "v"]:
        x0, eps = predict_x0_and_eps(lambda x, t: output, prediction, x_t, 40, float(schedule.alpha_bar[40]))
        expected = x0_and_eps_from_output(prediction, output, x_t, float(schedule.alpha_bar[40]))
        torch.testing.assert_close((x0, eps), expected)


# ------------------------------------------------------------------ the sample command


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    main(["train", "--config", "tiny", "--out", str(out), "--steps", "4", "--device", "cpu", "--quiet"])
    return out


def test_sample_command_writes_every_promised_file(tiny_run, tmp_path):
    out = tmp_path / "samples"
    main(["sample", "--model", str(tiny_run), "--label", "7", "--n", "5", "--seed", "0", "--sampler", "ddpm",
          "--steps", "6", "--out", str(out), "--device", "cpu"])
    for i in range(5):
        with Image.open(out / f"{i:03d}.png") as image:
            assert image.size == (28, 28) and image.mode == "L"
    with Image.open(out / "grid.png") as grid:
        assert grid.size == (5 * 30 + 2, 30 + 2)  # 5 columns of 28 + 2 padding, one row
    with Image.open(out / "denoise.gif") as gif:
        assert gif.size == ((4 * 30 + 2) * GIF_SCALE, 32 * GIF_SCALE)  # the first 4 images, enlarged
        assert gif.n_frames == 1 + 6  # x_T, then after each of the 6 steps
    meta = json.loads((out / "meta.json").read_text())
    assert meta["labels"] == [7] * 5 and meta["n"] == 5 and meta["steps"] == 6 and meta["nfe"] == 6
    assert meta["seed"] == 0 and meta["sampler"] == "ddpm" and meta["seconds"] > 0
    assert sorted(meta["files"]) == sorted(p.name for p in out.iterdir() if p.name != "meta.json")


def test_sample_command_is_reproducible_and_labels_cycle_by_default(tiny_run, tmp_path):
    for name in ["a", "b"]:
        main(["sample", "--model", str(tiny_run / "model.json"), "--n", "3", "--steps", "3",
              "--out", str(tmp_path / name), "--device", "cpu"])
    assert (tmp_path / "a" / "grid.png").read_bytes() == (tmp_path / "b" / "grid.png").read_bytes()
    assert json.loads((tmp_path / "a" / "meta.json").read_text())["labels"] == [0, 1, 2]


@pytest.mark.parametrize("arguments, message", [
    (["--model", "no_such_model"], "no checkpoint named 'no_such_model'"),
    (["--label", "12"], r"label 12 is outside 0 \.\.\. 9"),
    (["--steps", "1000"], "steps must lie in 1"),
    (["--n", "0"], "--n must be at least 1"),
])
def test_sample_command_errors_say_what_is_wrong(tiny_run, tmp_path, arguments, message):
    argv = ["sample", "--model", str(tiny_run), "--out", str(tmp_path), "--device", "cpu", *arguments]
    if "--model" in arguments:
        argv = ["sample", "--out", str(tmp_path), "--device", "cpu", *arguments]
    with pytest.raises(SystemExit, match=message):
        main(argv)
