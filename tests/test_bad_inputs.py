"""Every public entry point answers a bad argument with a ValueError or TypeError that names it, before any work.

One table per kind of entry point: the samplers (through `sample` and each `sample_*`), editing, the forward
process, the schedules, the configs, loading a model, the text-to-image pipeline, and every command of
`python -m minidiff`. Each row is a call with one bad argument (wrong type, wrong dtype, wrong shape, empty, zero,
negative, fractional, NaN, out of range, a list where one value goes or the reverse, batch sizes that disagree)
and the name the message must contain. A KeyError, IndexError, AttributeError or RuntimeError from inside the
library fails the row: it says where the code broke, not what the caller should pass. A refused command writes
nothing: its --out folder (or the model's JSON) is exactly as it was.
"""

import warnings
from dataclasses import replace
from types import FunctionType

import numpy as np
import pytest
import torch
from support.tiny import tiny_train_config, tiny_unet

from minidiff.__main__ import main
from minidiff.diffusion.config import DiffusionConfig
from minidiff.diffusion.editing import Edit
from minidiff.diffusion.forward import q_posterior, q_sample, q_step
from minidiff.diffusion.guidance import guided_denoiser
from minidiff.diffusion.loop import model_denoiser
from minidiff.diffusion.samplers import SAMPLERS, sample
from minidiff.diffusion.schedule import NoiseSchedule, cosine_betas, linear_betas, make_schedule, sigmoid_betas
from minidiff.diffusion.timesteps import sampling_timesteps
from minidiff.models import load_autoencoder, load_model
from minidiff.nets.unet import UNetConfig
from minidiff.pipeline import TextToImage
from minidiff.training.config import VAETrainConfig

NAN = float("nan")
T = 20
SCHEDULE = make_schedule("cosine", T)
SHAPE = (2, 1, 8, 8)


def zeros_denoiser(x_t, t):
    return torch.zeros_like(x_t)


def refused(call, name: str):
    """Run `call`, require a ValueError or TypeError that names `name`, and return it."""
    try:
        call()
    except (ValueError, TypeError) as error:
        assert name in str(error), f"the message does not name {name!r}: {error}"
        return error
    except Exception as error:  # noqa: BLE001 - a raw error from inside the library is the failure we look for
        pytest.fail(f"raw {type(error).__name__} instead of a ValueError/TypeError naming {name!r}: {error}")
    pytest.fail(f"accepted: nothing refused the bad {name!r}")


# ------------------------------------------------------------------ samplers: sample(name, ...) and each sample_*

BAD_SAMPLING = [  # (argument, bad value, the name its message must contain)
    ("steps", 0, "steps"), ("steps", -1, "steps"), ("steps", 2.5, "steps"), ("steps", 10.0, "steps"),
    ("steps", NAN, "steps"), ("steps", "10", "steps"), ("steps", T + 1, "steps"), ("steps", [5], "steps"),
    ("steps", True, "steps"),
    ("spacing", "even", "spacing"), ("spacing", 1, "spacing"), ("spacing", ["linspace"], "spacing"),
    ("clip_x0", "yes", "clip_x0"), ("clip_x0", None, "clip_x0"),
    ("generator", 0, "generator"), ("generator", "seed", "generator"),
    ("device", "gpu9", "device"), ("device", 3.0, "device"),
    ("callback", 5, "callback"),
    ("edit", "image", "edit"),
    ("edit", lambda: Edit(torch.zeros(2, 1, 4, 4)), "edit.x0"),  # a 4 x 4 input for 8 x 8 images
    ("edit", lambda: Edit(torch.zeros(3, 1, 8, 8)), "edit.x0"),  # 3 inputs for a batch of 2
    ("edit", lambda: Edit(torch.zeros(1, 3, 8, 8)), "edit.x0"),  # 3 channels for 1
    ("edit", lambda: Edit(torch.zeros(1, 1, 8, 8), mask=torch.ones(3, 1, 8, 8)), "mask"),  # 3 masks for 1 input
]
BAD_POSITIONAL = [  # (argument, bad value, name): the arguments every sampler takes in order
    ("denoiser", None, "denoiser"), ("denoiser", "unet", "denoiser"),
    ("shape", (0, 1, 8, 8), "shape"), ("shape", (-1, 1, 8, 8), "shape"), ("shape", (2, 1, 8.5, 8), "shape"),
    ("shape", 8, "shape"), ("shape", "2x1x8x8", "shape"), ("shape", (), "shape"),
    ("schedule", "cosine", "schedule"), ("schedule", None, "schedule"),
    ("prediction", "noise", "prediction"), ("prediction", 1, "prediction"), ("prediction", ["eps"], "prediction"),
]
OWN_OPTIONS = {  # the options only one sampler takes
    "ddpm": [("variance", "fixed", "variance"), ("variance", None, "variance")],
    "ddim": [("eta", -0.1, "eta"), ("eta", 1.5, "eta"), ("eta", NAN, "eta"), ("eta", "0", "eta"),
             ("eta", [0.5], "eta")],
}


def positional(**changes):
    arguments = {"denoiser": zeros_denoiser, "shape": SHAPE, "schedule": SCHEDULE, "prediction": "eps"}
    return {**arguments, **changes}


def value_of(bad):
    """The bad value itself, or, for a lambda in the table, the value it builds (an Edit is built per test)."""
    return bad() if isinstance(bad, FunctionType) else bad


@pytest.mark.parametrize("through", ["sample", "sample_*"])
@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_every_sampler_refuses_bad_options(sampler, through):
    cases = BAD_SAMPLING + OWN_OPTIONS.get(sampler, [])
    for option, bad, name in cases:
        def call():
            options = {"steps": 3, option: value_of(bad)}
            if through == "sample":
                return sample(sampler, zeros_denoiser, SHAPE, SCHEDULE, "eps", **options)
            return SAMPLERS[sampler](zeros_denoiser, SHAPE, SCHEDULE, "eps", **options)
        refused(call, name)
    for argument, bad, name in BAD_POSITIONAL:
        arguments = positional(**{argument: bad})
        if through == "sample":
            refused(lambda: sample(sampler, **arguments, steps=3), name)
        else:
            refused(lambda: SAMPLERS[sampler](**arguments, steps=3), name)


def test_a_condition_for_another_batch_size_is_refused_by_every_sampler():
    model = tiny_unet(num_classes=10)
    labels = torch.arange(3)  # three labels for a batch of two
    for denoiser in (model_denoiser(model, class_labels=labels), guided_denoiser(model, 2.0, class_labels=labels)):
        for sampler in SAMPLERS:
            refused(lambda: sample(sampler, denoiser, SHAPE, SCHEDULE, "eps", steps=2), "class_labels")


@pytest.mark.parametrize("name", ["DDIM", "", 3, ["ddim"], None])
def test_sample_refuses_an_unknown_sampler(name):
    refused(lambda: sample(name, zeros_denoiser, SHAPE, SCHEDULE, "eps", steps=3), "sampler")


def test_zero_terminal_snr_with_eps_is_refused_by_every_sampler():
    schedule = make_schedule("linear", 50, zero_terminal_snr=True)
    for sampler in ["ddpm", "ddim", "dpm++", "dpm++sde"]:
        refused(lambda: sample(sampler, zeros_denoiser, SHAPE, schedule, "eps", steps=3), "eps")
    for sampler in ["euler", "heun"]:  # Karras sigmas cannot start at sigma = inf, whatever the prediction
        refused(lambda: sample(sampler, zeros_denoiser, SHAPE, schedule, "v", steps=3), "zero terminal SNR")


def test_one_step_with_leading_spacing_warns_that_it_returns_noise():
    with pytest.warns(UserWarning, match="one step with leading spacing visits t = 0 only"):
        sample("ddim", zeros_denoiser, SHAPE, SCHEDULE, "eps", steps=1, spacing="leading")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for spacing in ["linspace", "trailing"]:  # these start at pure noise: nothing to warn about
            sampling_timesteps(T, 1, spacing)


# ------------------------------------------------------------------ editing

X0 = torch.zeros(2, 1, 8, 8)
BAD_EDITS = [  # (keyword arguments of Edit, name)
    (dict(x0=np.zeros((2, 1, 8, 8), np.float32)), "x0"), (dict(x0=torch.zeros(2, 1, 8, 8, dtype=torch.uint8)), "x0"),
    (dict(x0=torch.zeros(1, 8, 8)), "x0"), (dict(x0=[[0.0]]), "x0"),
    (dict(strength=NAN), "strength"), (dict(strength=-0.1), "strength"), (dict(strength=1.5), "strength"),
    (dict(strength="0.5"), "strength"), (dict(strength=[0.5]), "strength"), (dict(strength=None), "strength"),
    (dict(mask=np.ones((2, 1, 8, 8), np.float32)), "mask"), (dict(mask=torch.full((1, 1, 8, 8), 255.0)), "mask"),
    (dict(mask=torch.full((1, 1, 8, 8), NAN)), "mask"), (dict(mask=-torch.ones(1, 1, 8, 8)), "mask"),
    (dict(mask=torch.ones(1, 1, 4, 4)), "mask"), (dict(mask=torch.ones(1, 3, 8, 8)), "mask"),
    (dict(mask=torch.ones(3, 1, 8, 8)), "mask"), (dict(mask=torch.ones(8, 8)), "mask"),
    (dict(mask=torch.ones(1, 1, 8, 8, dtype=torch.bool)), "mask"),
    (dict(generator=1), "generator"),
]


@pytest.mark.parametrize("changes, name", BAD_EDITS)
def test_edit_refuses_bad_inputs(changes, name):
    refused(lambda: Edit(**{"x0": X0, **changes}), name)


def test_an_edit_mask_says_its_range_not_its_shape():
    error = refused(lambda: Edit(X0, mask=torch.full((1, 1, 8, 8), 255.0)), "mask")
    assert "[0, 1]" in str(error) and "255" in str(error)


# ------------------------------------------------------------------ the forward process

X = torch.zeros(3, 1, 4, 4)
BAD_FORWARD = [  # (function, keyword arguments, name)
    (q_sample, dict(schedule="cosine"), "schedule"), (q_sample, dict(x0=X.numpy()), "x0"),
    (q_sample, dict(x0=X.long()), "x0"), (q_sample, dict(t=2.5), "t"), (q_sample, dict(t=-1), "t"),
    (q_sample, dict(t=T), "t"), (q_sample, dict(t="3"), "t"), (q_sample, dict(t=torch.tensor([1.0, 2.0, 3.0])), "t"),
    (q_sample, dict(t=torch.tensor([1, 2])), "t"), (q_sample, dict(t=torch.ones(3, 1, dtype=torch.long)), "t"),
    (q_sample, dict(t=torch.tensor([0, T, 1])), "t"), (q_sample, dict(eps=torch.zeros(3, 1, 5, 5)), "eps"),
    (q_sample, dict(eps=X.numpy()), "eps"), (q_sample, dict(t=None), "t"),
    (q_step, dict(x_prev=X.numpy()), "x_prev"), (q_step, dict(t=-1), "t"),
    (q_step, dict(eps=torch.zeros(2, 1, 4, 4)), "eps"),
    (q_posterior, dict(x_t=X.numpy()), "x_t"), (q_posterior, dict(t=T), "t"),
    (q_posterior, dict(x0=torch.zeros(3, 1, 5, 5)), "x0"),
]


@pytest.mark.parametrize("function, changes, name", BAD_FORWARD, ids=lambda case: getattr(case, "__name__", None))
def test_the_forward_process_refuses_bad_inputs(function, changes, name):
    if function is q_posterior:
        arguments = {"schedule": SCHEDULE, "x0": X, "x_t": X, "t": 3, **changes}
    else:
        first = "x0" if function is q_sample else "x_prev"
        arguments = {"schedule": SCHEDULE, first: X, "t": 3, "eps": X, **changes}
    refused(lambda: function(**arguments), name)


# ------------------------------------------------------------------ schedules

BAD_SCHEDULES = [  # (call, name)
    (lambda: make_schedule("quadratic", 100), "schedule"), (lambda: make_schedule(None, 100), "schedule"),
    (lambda: make_schedule("cosine", 0), "T"), (lambda: make_schedule("cosine", -5), "T"),
    (lambda: make_schedule("cosine", 2.5), "T"), (lambda: make_schedule("cosine", 100.0), "T"),
    (lambda: make_schedule("cosine", "100"), "T"), (lambda: make_schedule("cosine", NAN), "T"),
    (lambda: make_schedule("cosine", [100]), "T"), (lambda: make_schedule("cosine", 100, zero_terminal_snr="yes"),
                                                    "zero_terminal_snr"),
    (lambda: make_schedule("cosine", 1, zero_terminal_snr=True), "T = 2"),
    (lambda: linear_betas(0), "T"), (lambda: linear_betas(10), "T > 20"), (lambda: cosine_betas(10, s=-1.0), "s"),
    (lambda: cosine_betas(10, s=NAN), "s"), (lambda: cosine_betas(2.5), "T"),
    (lambda: sigmoid_betas(10, temperature=0.0), "temperature"),
    (lambda: sigmoid_betas(10, start=3.0, end=-3.0), "start"),
    (lambda: NoiseSchedule.from_betas(torch.tensor([])), "betas"),
    (lambda: NoiseSchedule.from_betas(torch.full((2, 5), 0.1)), "betas"),
    (lambda: NoiseSchedule.from_betas(torch.tensor([0.1, NAN])), "beta"),
    (lambda: NoiseSchedule.from_betas(torch.tensor([0.1, 1.5])), "beta"),
    (lambda: NoiseSchedule.from_betas("0.1"), "betas"),
    (lambda: sampling_timesteps(0, 1), "T"), (lambda: sampling_timesteps(10, 11), "steps"),
]


@pytest.mark.parametrize("call, name", BAD_SCHEDULES)
def test_schedule_constructors_refuse_bad_settings(call, name):
    refused(call, name)


# ------------------------------------------------------------------ configs

BAD_DIFFUSION = [
    (dict(schedule="quadratic"), "schedule"), (dict(schedule=1), "schedule"), (dict(T=0), "T"), (dict(T=2.5), "T"),
    (dict(T="1000"), "T"), (dict(T=-1), "T"), (dict(T=None), "T"), (dict(prediction="noise"), "prediction"),
    (dict(zero_terminal_snr="yes"), "zero_terminal_snr"), (dict(zero_terminal_snr=True), "zero_terminal_snr"),
    (dict(zero_terminal_snr=True, prediction="eps"), "prediction"),
]
BAD_TRAINING = [  # changes to the tiny training preset
    (dict(batch_size=0), "batch_size"), (dict(batch_size=-1), "batch_size"), (dict(batch_size=2.5), "batch_size"),
    (dict(batch_size="16"), "batch_size"), (dict(batch_size=100), "batch_size"),  # more than its 64 images
    (dict(lr=0.0), "lr"), (dict(lr=-1e-3), "lr"), (dict(lr=NAN), "lr"), (dict(lr="1e-3"), "lr"),
    (dict(weight_decay=-1.0), "weight_decay"), (dict(warmup_steps=-1), "warmup_steps"),
    (dict(warmup_steps=2.5), "warmup_steps"), (dict(grad_clip=0.0), "grad_clip"), (dict(grad_clip=NAN), "grad_clip"),
    (dict(steps=0), "steps"), (dict(steps=-5), "steps"), (dict(steps=2.5), "steps"), (dict(steps=NAN), "steps"),
    (dict(steps=None, minutes=None), "steps"), (dict(minutes=0.0), "minutes"), (dict(minutes=-1.0), "minutes"),
    (dict(minutes=NAN), "minutes"), (dict(minutes="10"), "minutes"), (dict(decay_steps=0), "decay_steps"),
    (dict(checkpoint_every_steps=0), "checkpoint_every_steps"),
    (dict(checkpoint_every_minutes=-1.0), "checkpoint_every_minutes"), (dict(seed=-1), "seed"),
    (dict(seed=2.5), "seed"), (dict(max_images=0), "max_images"), (dict(dataset_size=0), "dataset_size"),
    (dict(token_drop_prob=1.5), "token_drop_prob"), (dict(token_drop_prob=NAN), "token_drop_prob"),
    (dict(class_drop_prob=-0.1), "class_drop_prob"), (dict(class_drop_prob=1.0), "class_drop_prob"),
    (dict(ema_decay=1.5), "ema_decay"), (dict(min_snr_gamma=0.0), "min_snr_gamma"),
    (dict(min_snr_gamma=-5.0), "min_snr_gamma"), (dict(sample_every_steps=0), "sample_every_steps"),
    (dict(sample_grid_steps=0), "sample_grid_steps"), (dict(sample_grid_steps=101), "sample_grid_steps"),
    (dict(data="cifar"), "data"), (dict(unet="big"), "unet"), (dict(diffusion="cosine"), "diffusion"),
    (dict(diffusion={"zero_terminal_snr": True}), "zero_terminal_snr"), (dict(encoder=5), "encoder"),
    (dict(autoencoder=5), "autoencoder"),
]
BAD_VAE_TRAINING = [
    (dict(batch_size=0), "batch_size"), (dict(lr=NAN), "lr"), (dict(steps=0), "steps"), (dict(minutes=-1.0), "minutes"),
    (dict(eval_images=0), "eval_images"), (dict(dataset_size=0), "dataset_size"),
    (dict(autoencoder="big"), "autoencoder"),
    (dict(seed="0"), "seed"), (dict(decoder_from=3), "decoder_from"), (dict(decoder_from=""), "decoder_from"),
    (dict(autoencoder={"decoder_channels": (64, 128)}), "decoder_channels"),
    (dict(autoencoder={"decoder_channels": (60, 128, 128)}), "GroupNorm"),
]
BAD_UNETS = [
    (dict(channels=()), "channels"), (dict(channels=32), "channels"), (dict(groups=0), "groups"),
    (dict(heads=0), "heads"), (dict(in_channels=0), "in_channels"), (dict(blocks_per_level=0), "blocks_per_level"),
    (dict(dropout=1.5), "dropout"), (dict(num_classes=0), "num_classes"), (dict(channels=(7, 14)), "channels"),
    (dict(attention_levels=(True,)), "attention_levels"), (dict(in_channels=2.5), "in_channels"),
]


@pytest.mark.parametrize("changes, name", BAD_DIFFUSION)
def test_diffusion_config_refuses_bad_settings(changes, name):
    refused(lambda: DiffusionConfig(**changes), name)


@pytest.mark.parametrize("changes, name", BAD_TRAINING)
def test_train_config_refuses_bad_settings(changes, name):
    refused(lambda: tiny_train_config(**changes), name)


@pytest.mark.parametrize("changes, name", BAD_VAE_TRAINING)
def test_vae_train_config_refuses_bad_settings(changes, name):
    refused(lambda: replace(VAETrainConfig(), **changes), name)


@pytest.mark.parametrize("changes, name", BAD_UNETS)
def test_unet_config_refuses_bad_settings(changes, name):
    refused(lambda: UNetConfig(**changes), name)


# ------------------------------------------------------------------ loading models, guidance

@pytest.mark.parametrize("call, name", [
    (lambda: load_model(3), "name_or_path"), (lambda: load_model(None), "name_or_path"),
    (lambda: load_model("mnist", device="gpu9"), "device"), (lambda: load_autoencoder(["shapes_vae"]), "name_or_path"),
    (lambda: TextToImage.load("mnist"), "mnist is a class model, not a text model"),
    (lambda: TextToImage.load(3), "name_or_path"), (lambda: TextToImage.load("shapes_text", device="gpu9"), "device"),
])
def test_loading_refuses_what_it_cannot_load(call, name):
    refused(call, name)


def test_a_missing_checkpoint_is_a_file_not_found_error_naming_it():
    with pytest.raises(FileNotFoundError, match="no checkpoint named 'nowhere'"):
        load_model("nowhere")


@pytest.mark.parametrize("guidance, rescale, name", [
    (NAN, 0.0, "guidance"), ("3", 0.0, "guidance"), ([3.0], 0.0, "guidance"), (None, 0.0, "guidance"),
    (3.0, 1.5, "rescale"), (3.0, NAN, "rescale"), (3.0, -0.1, "rescale"),
])
def test_guided_denoiser_refuses_bad_scales(guidance, rescale, name):
    labels = torch.zeros(2, dtype=torch.long)
    refused(lambda: guided_denoiser(torch.nn.Identity(), guidance, class_labels=labels, rescale=rescale), name)


# ------------------------------------------------------------------ the text-to-image pipeline

@pytest.fixture(scope="module")
def pipe(tiny_text_model):
    return TextToImage.load(tiny_text_model)


IMAGE = np.zeros((32, 32, 3), np.uint8)
PROMPT = "a red circle"
BAD_CALLS = [  # (positional prompt, keyword arguments, name)
    (3, {}, "prompt"), (None, {}, "prompt"), ([], {}, "prompt"), ([3], {}, "prompt"), ([PROMPT, 3], {}, "prompt"),
    (PROMPT, dict(n=0), "n"), (PROMPT, dict(n=-1), "n"), (PROMPT, dict(n=2.5), "n"), (PROMPT, dict(n="2"), "n"),
    (PROMPT, dict(n=NAN), "n"), ([PROMPT, PROMPT], dict(n=3), "n"),
    (PROMPT, dict(steps=0), "steps"), (PROMPT, dict(steps=2.5), "steps"), (PROMPT, dict(steps=10.0), "steps"),
    (PROMPT, dict(steps=1001), "steps"), (PROMPT, dict(steps=NAN), "steps"), (PROMPT, dict(steps="20"), "steps"),
    (PROMPT, dict(guidance=NAN), "guidance"), (PROMPT, dict(guidance="3"), "guidance"),
    (PROMPT, dict(guidance=[3.0]), "guidance"), (PROMPT, dict(rescale=1.5), "rescale"),
    (PROMPT, dict(rescale=NAN), "rescale"), (PROMPT, dict(guidance=None, rescale=0.7), "rescale"),
    (PROMPT, dict(guidance=None, negative_prompt="blue"), "guidance"),
    (PROMPT, dict(negative_prompt=3), "negative_prompt"),
    (PROMPT, dict(seed=-1), "seed"), (PROMPT, dict(seed=2.5), "seed"), (PROMPT, dict(seed="0"), "seed"),
    (PROMPT, dict(generator=0), "generator"), (PROMPT, dict(unknown="ignore"), "unknown"),
    (PROMPT, dict(sampler="DDIM"), "sampler"), (PROMPT, dict(spacing="even"), "spacing"),
    (PROMPT, dict(keep_trajectory="yes"), "keep_trajectory"),
    (PROMPT, dict(init_image=np.zeros((28, 28, 3), np.uint8)), "init_image"),
    (PROMPT, dict(init_image=IMAGE.astype(np.float32)), "init_image"), (PROMPT, dict(init_image=3), "init_image"),
    (PROMPT, dict(init_image=IMAGE, strength=1.5), "strength"),
    (PROMPT, dict(init_image=IMAGE, strength=NAN), "strength"),
    (PROMPT, dict(init_image=IMAGE, strength="0.5"), "strength"), (PROMPT, dict(strength=0.5), "init_image"),
    (PROMPT, dict(init_image=IMAGE, mask=torch.full((1, 1, 32, 32), 255.0)), "mask"),
    (PROMPT, dict(init_image=IMAGE, mask=np.full((1, 1, 32, 32), 255, np.uint8)), "mask"),
    (PROMPT, dict(init_image=IMAGE, mask=torch.ones(1, 1, 8, 8)), "mask"),
    (PROMPT, dict(init_image=IMAGE, mask=torch.ones(2, 1, 32, 32)), "mask"),
    (PROMPT, dict(init_image=IMAGE, mask="mask.png"), "mask"),
    (PROMPT, dict(init_image=IMAGE, mask=np.array([["a"]])), "mask"),
    (PROMPT, dict(device="cpu"), "device"), (PROMPT, dict(clip_x0=True), "clip_x0"), (PROMPT, dict(stpes=5), "stpes"),
]


@pytest.mark.parametrize("prompt, changes, name", BAD_CALLS)
def test_the_pipeline_refuses_bad_arguments(pipe, prompt, changes, name):
    refused(lambda: pipe(prompt, **{"steps": 2, **changes}), name)


def test_the_pipeline_takes_a_numpy_mask_like_a_tensor(pipe):
    mask = np.zeros((1, 1, 32, 32), np.float32)
    mask[..., 16:] = 1.0
    from_numpy = pipe(PROMPT, steps=2, init_image=IMAGE, mask=mask).images
    from_tensor = pipe(PROMPT, steps=2, init_image=IMAGE, mask=torch.from_numpy(mask)).images
    assert torch.equal(from_numpy, from_tensor)


def test_negative_guidance_and_an_empty_prompt_are_drawn_with_a_warning(pipe):
    with pytest.warns(UserWarning, match="guidance = -3.0 < 0 pushes each prediction away"):
        assert pipe(PROMPT, steps=2, guidance=-3).images.shape == (1, 3, 32, 32)
    with pytest.warns(UserWarning, match="an empty prompt names nothing") as caught:
        assert pipe("", steps=2).images.shape == (1, 3, 32, 32)
    assert caught[0].filename == __file__  # the warning points at the caller's line, not inside the library


def test_a_byte_pair_model_refuses_an_empty_prompt_without_first_promising_to_draw_it(tiny_emoji_model):
    emoji_pipe = TextToImage.load(tiny_emoji_model[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "draws unconditional images" warning before the refusal
        for empty in ("", "   "):
            with pytest.raises(ValueError, match="holds no character the tokenizer knows"):
                emoji_pipe(empty, steps=2)


# ------------------------------------------------------------------ python -m minidiff: every command


def folder_state(folder) -> dict:
    """Every file under `folder` and its bytes ({} when the folder does not exist)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()} \
        if folder.exists() else {}


def refused_command(argv: list[str], name: str, capsys) -> None:
    """The command stops (SystemExit) with a message that names `name`, from the dispatcher or from argparse."""
    try:
        main(argv)
    except SystemExit as stop:
        message = f"{stop.code} {capsys.readouterr().err}"
        assert stop.code != 0, f"{argv} exited with success"
        assert name in message, f"{argv}: the message does not name {name!r}: {message}"
        return
    except Exception as error:  # noqa: BLE001 - a traceback instead of a one-line message
        pytest.fail(f"{argv}: raw {type(error).__name__} instead of a one-line message naming {name!r}: {error}")
    pytest.fail(f"{argv} accepted the bad {name!r}")


COMMON = [(["--n", "0"], "--n"), (["--n", "-1"], "--n"), (["--n", "2.5"], "--n"), (["--seed", "-1"], "--seed"),
          (["--threads", "0"], "--threads"), (["--threads", "-2"], "--threads")]
SAMPLE = COMMON + [
    (["--steps", "0"], "--steps"), (["--steps", "-1"], "--steps"), (["--steps", "1001"], "steps"),
    (["--steps", "2.5"], "--steps"), (["--guidance", "nan"], "--guidance"),
    (["--guidance", "3", "--guidance-rescale", "2"], "rescale"), (["--guidance-rescale", "0.7"], "--guidance"),
    (["--sampler", "ddim", "--eta", "2"], "eta"), (["--sampler", "ddim", "--eta", "nan"], "eta"),
    (["--eta", "0.5"], "--eta"), (["--device", "gpu9"], "device"), (["--label", "11"], "label"),
    (["--label", "x"], "--label"), (["--sampler", "foo"], "--sampler"), (["--spacing", "foo"], "--spacing"),
    (["--model", "nowhere"], "nowhere"),
    (["--model", "mnist", "--prompt", "a red circle"], "mnist is a class model, not a text model"),
    (["--prompt", "a red circle", "--model", "shapes_text", "--strength", "0.5"], "--init-image"),
    (["--strength", "0.5"], "--strength"),
    (["--model", "shapes_text"], "shapes_text is a text-to-image model: give it --prompt"),
    (["--model", "shapes_text_dit", "--label", "3"], "give it --prompt"),
    (["--model", "emoji"], 'emoji is a text-to-image model: give it --prompt "..." (e.g. --prompt "fox in noto style")'),
    (["--model", "emoji", "--prompt", "   "], "holds no character the tokenizer knows"),
]
TRAIN = [(["--steps", "0"], "--steps"), (["--steps", "-1"], "--steps"), (["--minutes", "-1"], "--minutes"),
         (["--minutes", "nan"], "--minutes"), (["--minutes", "0"], "--minutes"), (["--seed", "-1"], "--seed"),
         (["--threads", "0"], "--threads"), (["--device", "gpu9"], "device")]
EVALUATE = COMMON + [(["--steps", "0"], "--steps"), (["--guidance", "nan"], "--guidance"),
                     (["--sampler", "foo"], "--sampler"), (["--model", "shapes_text"], "not a class-conditional")]
EVALUATE_TEXT = COMMON + [(["--heldout-n", "0"], "--heldout-n"), (["--steps", "0"], "--steps"),
                          (["--guidance", "nan"], "--guidance"), (["--model", "mnist"], "mnist is a class model")]
TRAIN_VAE = [(["--decoder-from", "nowhere"], "nowhere"),
             (["--decoder-from", "shapes_vae", "--resume"], "--decoder-from starts a new run")]
DEMO = COMMON + [(["--model", "mnist"], "mnist is a class model"), (["--emoji-model", "mnist"], "mnist is a class model")]


@pytest.mark.parametrize("arguments, name", SAMPLE)
def test_sample_command_refuses_and_writes_nothing(tmp_path, capsys, arguments, name):
    out = tmp_path / "out"
    out.mkdir()
    (out / "grid.png").write_bytes(b"an earlier result")
    before = folder_state(out)
    refused_command(["sample", "--out", str(out), "--device", "cpu", "--steps", "2", *arguments], name, capsys)
    assert folder_state(out) == before


@pytest.mark.parametrize("command", ["train", "train-vae"])
@pytest.mark.parametrize("arguments, name", TRAIN)
def test_training_commands_refuse_and_write_nothing(tmp_path, capsys, command, arguments, name):
    out = tmp_path / "run"
    preset = ["--config", "tiny"] if command == "train" else ["--preset", "tiny"]
    refused_command([command, "--out", str(out), *preset, "--quiet", *arguments], name, capsys)
    assert not out.exists()


@pytest.mark.parametrize("arguments, name", TRAIN_VAE)
def test_train_vae_refuses_a_decoder_it_cannot_fine_tune_and_writes_nothing(tmp_path, capsys, arguments, name):
    out = tmp_path / "run"
    refused_command(["train-vae", "--out", str(out), "--preset", "tiny", "--quiet", *arguments], name, capsys)
    assert not out.exists()


@pytest.mark.parametrize("arguments, name", EVALUATE)
def test_evaluate_refuses_and_records_nothing(tiny_digit_model, capsys, arguments, name):
    before = folder_state(tiny_digit_model.parent)
    model = [] if "--model" in arguments else ["--model", str(tiny_digit_model)]
    refused_command(["evaluate", *model, "--n", "2", "--steps", "2", "--record", "--device", "cpu", *arguments],
                    name, capsys)
    assert folder_state(tiny_digit_model.parent) == before


@pytest.mark.parametrize("arguments, name", EVALUATE_TEXT)
def test_evaluate_text_refuses_and_records_nothing(tiny_text_model, capsys, arguments, name):
    before = folder_state(tiny_text_model)
    model = [] if "--model" in arguments else ["--model", str(tiny_text_model)]
    refused_command(["evaluate-text", *model, "--n", "2", "--heldout-n", "2", "--steps", "2", "--record",
                     *arguments], name, capsys)
    assert folder_state(tiny_text_model) == before


@pytest.mark.parametrize("arguments, name", DEMO)
def test_demo_refuses_and_writes_nothing(tiny_text_model, tmp_path, capsys, arguments, name):
    out = tmp_path / "out"
    model = [] if "--model" in arguments else ["--model", str(tiny_text_model)]
    refused_command(["demo", "--out", str(out), *model, *arguments], name, capsys)
    assert not out.exists()

