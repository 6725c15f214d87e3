"""Test-wide settings, and the fixtures that several folders of tests share: the tiny trained models below (each
trained once per session, in seconds) and the widget modes. Tiny configs and helpers are plain modules in support/.

Unit tests use small tensors, where torch's thread pool costs more than it saves on a 2-core machine
(measured: the training and sampler tests ran about 4x slower with 2 threads). Chapters run in their own
kernels and are not affected.
"""

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # diffusers is a reference only; nothing may reach the network
torch.set_num_threads(1)


BOOK_TESTS = ("tests/chapters/test_book.py::", "tests/chapters/test_chapters.py::",
              "tests/chapters/test_browser.py::test_book_scrubbers_move_offline")  # they read the built book
LAB_TESTS = "tests/chapters/test_browser.py::"  # the others drive JupyterLab


def chapter_scope(nodeid: str) -> str:
    """Which worker's share a test is in, for `make test`'s two workers: "book" for every test that reads the built
    book (building it executes every chapter, once per process), "lab" for the chapters run in JupyterLab, and each
    other test module on its own (its module-scoped fixtures, some of them trained models, made once)."""
    if nodeid.startswith(BOOK_TESTS):
        return "book"
    return "lab" if nodeid.startswith(LAB_TESTS) else nodeid.split("::")[0]


def pytest_xdist_make_scheduler(config, log):
    """`make test` runs `pytest -n 2 --dist loadscope` (pytest-xdist): xdist hands out whole scopes, the largest first,
    so one worker builds the book while the other runs the chapters in JupyterLab, and the single tests fill both."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ChapterScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return chapter_scope(nodeid)

    return ChapterScheduling(config, log)


@pytest.fixture(scope="session")
def tiny_vae(tmp_path_factory):
    """A seconds-long autoencoder checkpoint (STEM path): its weights are poor, but every path through the code is
    real. Shared by the model, pipeline, training and command-line tests."""
    from minidiff.training.presets import AUTOENCODER_PRESETS
    from minidiff.training.vae import train_vae

    folder = tmp_path_factory.mktemp("vae")
    train_vae(AUTOENCODER_PRESETS["tiny"](), folder, progress=False)
    return folder / "autoencoder"


@pytest.fixture(scope="session")
def tiny_text_model(tiny_vae, tmp_path_factory):
    """A text-conditioned latent model trained for 3 steps on the tiny autoencoder: a run folder to load."""
    from support.tiny import tiny_text_encoder

    from minidiff.training.loop import train
    from minidiff.training.presets import PRESETS

    folder = tmp_path_factory.mktemp("text")
    config = PRESETS["tiny_latent"]()
    config.autoencoder, config.steps = str(tiny_vae), 3
    config.encoder = tiny_text_encoder()
    train(config, folder, device="cpu", progress=False)
    return folder


@pytest.fixture(scope="session")
def tiny_latent_run(tiny_vae, tmp_path_factory):
    """An attribute-conditioned latent model trained for the tiny_latent preset's 20 steps on the tiny autoencoder:
    (its run folder, the finished run). Shared by the training-loop, pipeline and model tests."""
    from minidiff.training.loop import train
    from minidiff.training.presets import PRESETS

    folder = tmp_path_factory.mktemp("latent")
    config = PRESETS["tiny_latent"]()
    config.autoencoder = str(tiny_vae)
    run = train(config, folder, device="cpu", progress=False)
    return folder, run


@pytest.fixture(scope="session")
def tiny_digit_model(tmp_path_factory):
    """A class-conditional digit model of the `tiny` preset (STEM path of its checkpoint). Shared by the digit
    measuring tests and the evaluate command's, which records metrics in it."""
    from minidiff.training.loop import train
    from minidiff.training.presets import tiny_config

    out = tmp_path_factory.mktemp("run")
    train(tiny_config(), out, device="cpu", progress=False)
    return out / "model"


@pytest.fixture
def live_widgets(monkeypatch):
    """The views return live ipywidgets, as in JupyterLab."""
    from minidiff.views import widgets

    monkeypatch.delenv(widgets.BOOK_ENV, raising=False)


@pytest.fixture
def book_widgets(monkeypatch):
    """The views return static HTML players, as in the book build."""
    from minidiff.views import widgets

    monkeypatch.setenv(widgets.BOOK_ENV, "1")


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory):
    """A tiny CLIP trained for 10 steps (its run folder, holding clip.json + .safetensors): the emoji model's frozen
    text encoder in the tests. Retrieval is not measured (minutes on a CPU); train-clip's own tests do that."""
    from minidiff.files.device import resolve_device
    from minidiff.training.clip import CLIP_PRESETS, run_clip, save_clip

    folder = tmp_path_factory.mktemp("clip")
    config = CLIP_PRESETS["tiny"]()
    config.steps = 10
    run = run_clip(config, folder, False, resolve_device("cpu"), "tiny clip for tests", progress=False)
    save_clip(folder / "clip", run, resolve_device("cpu"), metrics={})
    return folder


@pytest.fixture(scope="session")
def tiny_evaluator(tmp_path_factory):
    """A second tiny CLIP (another seed, 4 steps): the evaluator of the tiny emoji model in the tests."""
    from minidiff.files.device import resolve_device
    from minidiff.training.clip import CLIP_PRESETS, run_clip, save_clip

    folder = tmp_path_factory.mktemp("evaluator")
    config = CLIP_PRESETS["tiny"]()
    config.steps, config.seed = 4, 1
    run = run_clip(config, folder, False, resolve_device("cpu"), "tiny evaluator for tests", progress=False)
    save_clip(folder / "clip", run, resolve_device("cpu"), metrics={})
    return folder


@pytest.fixture(scope="session")
def tiny_emoji_vae(tmp_path_factory):
    """The tiny autoencoder preset trained for 12 steps on the emoji train split (STEM path of its checkpoint)."""
    from minidiff.training.presets import AUTOENCODER_PRESETS
    from minidiff.training.vae import train_vae

    folder = tmp_path_factory.mktemp("emoji_vae")
    config = AUTOENCODER_PRESETS["tiny"]()
    config.data = "emoji"
    train_vae(config, folder, progress=False)
    return folder / "autoencoder"


@pytest.fixture(scope="session")
def tiny_emoji_model(tiny_clip, tiny_emoji_vae, tmp_path_factory):
    """The tiny_emoji_text preset trained for 6 steps on the tiny CLIP's frozen text tower and the tiny emoji
    autoencoder: (its run folder, the finished run)."""
    from minidiff.models import clip_encoder_config
    from minidiff.training.loop import train
    from minidiff.training.presets import PRESETS

    folder = tmp_path_factory.mktemp("emoji_text")
    config = PRESETS["tiny_emoji_text"]()
    config.autoencoder, config.encoder, config.steps = str(tiny_emoji_vae), clip_encoder_config(tiny_clip), 6
    run = train(config, folder, device="cpu", progress=False)
    return folder, run
