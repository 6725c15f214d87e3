"""`python -m minidiff evaluate`: a digit model's figures, printed and recorded in its checkpoint."""

import json

import pytest

from minidiff.__main__ import main


def test_evaluate_command_prints_and_records_the_figures(tiny_digit_model, capsys):
    main(["evaluate", "--model", str(tiny_digit_model), "--n", "20", "--sampler", "dpm++", "--steps", "4",
          "--device", "cpu", "--record"])
    printed = capsys.readouterr().out
    report = json.loads(printed[: printed.rindex("}") + 1])
    assert 0 <= report["class_accuracy"] <= 1 and report["frechet_distance"] > 0
    assert report["real_vs_real_frechet_distance"] > 0 and report["nfe"] == 4
    recorded = json.loads(tiny_digit_model.with_suffix(".json").read_text())["metrics"]["dpm++_4_steps"]
    assert recorded["class_accuracy"] == report["class_accuracy"]
    assert recorded["command"].startswith("python -m minidiff evaluate")


def test_evaluate_refuses_a_model_that_draws_no_digits_by_class(tiny_text_model):
    with pytest.raises(SystemExit, match="minidiff evaluate: .* not a class-conditional digit model.*evaluate-text"):
        main(["evaluate", "--model", str(tiny_text_model), "--n", "2", "--steps", "2"])


def test_evaluate_measures_a_flow_model_with_the_flow_samplers(tmp_path, capsys):
    main(["train", "--config", "tiny_flow", "--out", str(tmp_path), "--steps", "2", "--device", "cpu", "--quiet"])
    main(["evaluate", "--model", str(tmp_path), "--n", "10", "--sampler", "flow_heun", "--steps", "3",
          "--device", "cpu"])
    printed = capsys.readouterr().out
    report = json.loads(printed[printed.index("{"): printed.rindex("}") + 1])
    assert report["sampler"] == "flow_heun" and report["nfe"] == 5 and report["frechet_distance"] > 0
    assert "--sampler flow_heun" in report["command"]
    with pytest.raises(SystemExit, match="--sampler ddpm does not fit this model .*'flow_euler'"):
        main(["evaluate", "--model", str(tmp_path), "--n", "2", "--sampler", "ddpm", "--steps", "2"])
