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
