"""`python -m minidiff train`: a run from the command line, resumed, recorded, and not overwritten."""

import pytest

from minidiff.__main__ import main
from minidiff.files.training_state import load_training_state


def test_train_command_runs_and_resumes_from_the_command_line(tmp_path):
    out = str(tmp_path / "run")
    main(["train", "--config", "tiny", "--out", out, "--steps", "3", "--device", "cpu", "--quiet"])
    main(["train", "--out", out, "--steps", "5", "--resume", "--device", "cpu", "--quiet"])
    state = load_training_state(tmp_path / "run" / "train_state")
    assert state.step == 5 and len(state.loss_history) == 5
    assert state.command.splitlines() == [
        f"python -m minidiff train --out {out} --config tiny --seed 0 --steps 3 --device cpu",
        f"python -m minidiff train --out {out} --resume --steps 5 --device cpu"]
    with pytest.raises(SystemExit, match="already holds a run"):
        main(["train", "--config", "tiny", "--out", out, "--steps", "3", "--device", "cpu", "--quiet"])


def test_a_dit_run_trains_and_resumes_exactly_from_the_command_line(tmp_path):
    """The tiny_dit preset (a DiT on the shipped autoencoder's latents): the config read back from train_state.json
    on --resume holds the DiT, and the resumed run has exactly the losses of an uninterrupted one."""
    split, whole = str(tmp_path / "split"), str(tmp_path / "whole")
    main(["train", "--config", "tiny_dit", "--out", split, "--steps", "2", "--device", "cpu", "--quiet"])
    main(["train", "--out", split, "--steps", "4", "--resume", "--device", "cpu", "--quiet"])
    main(["train", "--config", "tiny_dit", "--out", whole, "--steps", "4", "--device", "cpu", "--quiet"])
    resumed, uninterrupted = (load_training_state(tmp_path / name / "train_state") for name in ("split", "whole"))
    assert resumed.config["unet"] is None and resumed.config["dit"]["dim"] == 16
    assert resumed.step == 4 and resumed.loss_history == uninterrupted.loss_history
