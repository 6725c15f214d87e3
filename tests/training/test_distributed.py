"""Training on several processes: torchrun starts 2 CPU processes (gloo) on 127.0.0.1, and they take the steps that
one process takes with the whole batch; a distributed run resumes exactly, and on another number of processes.

Agreement is to 1e-5, not bitwise: the gradient of one batch is summed in another order when two processes each sum
half of it. The largest difference after a few steps (~5e-6) is in the attention's key biases: their true gradient
is 0 (a constant added to every key leaves the softmax unchanged), the computed one is rounding noise, and Adam
divides it by its own size, so a bias moves by a share of the learning rate in a direction the rounding picks.
"""

import os
import signal
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from support.tiny import tiny_train_config

import minidiff
from minidiff.files.training_state import load_training_state
from minidiff.training.distributed import Processes, micro_batches
from minidiff.training.dropout import DropoutMasks, PerImageDropout, use_per_image_dropout
from minidiff.training.loop import train
from minidiff.training.presets import AUTOENCODER_PRESETS, PRESETS
from minidiff.training.vae import train_vae

STEPS = 4  # tiny preset: batch 16, so 8 images per process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*arguments: str, processes: int = 2) -> None:
    """`torchrun --nproc_per_node N ARGUMENTS` (`-m minidiff ...` or a script) on this machine, one thread each."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(processes),
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), *arguments]
    root = str(Path(minidiff.__file__).parents[1])  # this checkout's minidiff, in the processes too
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    launcher = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)  # its own process group: a hung run is ended whole
    try:
        _, errors = launcher.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(launcher.pid, signal.SIGKILL)
        raise
    shown = errors if len(errors) <= 6000 else errors[:3000] + "\n[...]\n" + errors[-3000:]  # the first error too
    assert launcher.returncode == 0, shown


# What the second launch runs in each process (one launch: starting python and torch takes most of a launch's time):
# a run stopped halfway, copied (to resume it on one process later), resumed; and the tiny autoencoder.
WORKER = f"""
import os, shutil, sys
from dataclasses import replace
from pathlib import Path
import torch
from minidiff.training.distributed import finish
from minidiff.training.loop import train
from minidiff.training.presets import AUTOENCODER_PRESETS, PRESETS
from minidiff.training.vae import train_vae
torch.set_num_threads(1)
root = Path(sys.argv[1])
train(replace(PRESETS["tiny"](), steps={STEPS // 2}), root / "split", device="cpu", progress=False)
if os.environ["RANK"] == "0":
    shutil.copytree(root / "split", root / "split_on_one")
train(replace(PRESETS["tiny"](), steps={STEPS}), root / "split", resume=True, device="cpu", progress=False)
train_vae(replace(AUTOENCODER_PRESETS["tiny"](), steps=3), root / "autoencoder_two", device="cpu", progress=False)
finish()  # what the train command does at its end: wait for every process, then leave the group
"""


def state(folder: Path):
    return load_training_state(folder / "train_state")


def assert_same_run(a, b, atol: float) -> None:
    """Same steps, losses, weights and EMA, within atol (0: bitwise)."""
    assert a.step == b.step
    torch.testing.assert_close(torch.tensor(a.loss_history), torch.tensor(b.loss_history), rtol=0, atol=atol)
    for weights in ("model", "ema"):
        for name, value in getattr(a, weights).items():
            torch.testing.assert_close(getattr(b, weights)[name], value, rtol=0, atol=atol, msg=f"{weights} {name}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The tiny preset for STEPS steps on 1 process, and on 2 from the command line; on 2 stopped halfway and
    resumed on 2, and the same halfway point resumed on 1; the tiny autoencoder for 3 steps on 1 and on 2."""
    root = tmp_path_factory.mktemp("distributed")
    train(tiny_train_config(steps=STEPS), root / "one", device="cpu", progress=False)
    torchrun("-m", "minidiff", "train", "--config", "tiny", "--out", str(root / "two"), "--steps", str(STEPS),
             "--device", "cpu", "--quiet")
    (root / "worker.py").write_text(WORKER)
    torchrun(str(root / "worker.py"), str(root))
    train(tiny_train_config(steps=STEPS), root / "split_on_one", resume=True, device="cpu", progress=False)
    train_vae(replace(AUTOENCODER_PRESETS["tiny"](), steps=3), root / "autoencoder_one", progress=False)
    return root


def test_two_processes_take_the_steps_of_one_process_with_the_whole_batch(runs):
    one, two = state(runs / "one"), state(runs / "two")
    assert_same_run(one, two, atol=1e-5)
    assert len(two.loss_history) == STEPS and len(set(two.loss_history)) == STEPS  # real, different steps
    assert two.command.startswith("torchrun --nproc_per_node 2 -m minidiff train")
    assert sorted(p.name for p in (runs / "two" / "samples").iterdir()) == [f"step_{STEPS:06d}.png"]


def test_a_distributed_run_resumes_exactly(runs):
    assert_same_run(state(runs / "two"), state(runs / "split"), atol=0)


def test_a_distributed_run_resumes_on_one_process(runs):
    assert_same_run(state(runs / "one"), state(runs / "split_on_one"), atol=1e-5)


def test_the_autoencoder_trains_on_two_processes_as_on_one(runs):
    assert_same_run(state(runs / "autoencoder_one"), state(runs / "autoencoder_two"), atol=1e-5)
    assert (runs / "autoencoder_two" / "autoencoder.json").exists()


# ------------------------------------------------------------------ how a batch is split


def test_the_processes_micro_batches_cover_the_batch_once_in_equal_parts():
    rows = [micro_batches(24, Processes(rank=r, world_size=3), accumulate=2) for r in range(3)]
    covered = [i for process in rows for part in process for i in range(24)[part]]
    assert covered == list(range(24)) and all(part.stop - part.start == 4 for p in rows for part in p)
    with pytest.raises(ValueError, match="divisible by 6"):
        micro_batches(16, Processes(rank=0, world_size=3), accumulate=2)


def test_dropout_masks_follow_the_images_not_the_split():
    masks = DropoutMasks()
    dropout = PerImageDropout(0.5, masks).train()
    x = torch.ones(4, 3, 5, 5)
    with masks.images(seed=0, step=7, positions=range(4), batch_size=4):
        whole = dropout(x)
    halves = []
    for positions in (range(2), range(2, 4)):
        with masks.images(seed=0, step=7, positions=positions, batch_size=4):
            halves.append(dropout(x[:2]))
    assert torch.equal(whole, torch.cat(halves))
    assert set(whole.unique().tolist()) == {0.0, 2.0}  # kept values scaled by 1 / (1 - p)
    assert 0.35 < (whole == 0).float().mean() < 0.65
    with masks.images(seed=0, step=8, positions=range(4), batch_size=4):
        assert not torch.equal(dropout(x), whole)  # another step, other masks
    with masks.images(seed=0, step=7, positions=range(4), batch_size=4):
        first, second = dropout(x), dropout(x)
    assert torch.equal(first, whole) and not torch.equal(second, first)  # the pass's next layer, another mask
    assert torch.equal(dropout.eval()(x), x)


def test_the_unets_dropout_layers_are_replaced_for_training():
    run_config = PRESETS["tiny"]()
    from minidiff.training.run import new_run

    run = new_run(run_config, torch.device("cpu"), command="test")
    layers = [m for m in run.model.modules() if isinstance(m, torch.nn.Dropout)]
    assert layers and all(isinstance(m, PerImageDropout) and m.p == 0.1 for m in layers)
    assert use_per_image_dropout(run.model, DropoutMasks()) == 0  # nothing left to replace
