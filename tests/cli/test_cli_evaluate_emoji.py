"""`python -m minidiff evaluate-emoji` end to end on the tiny emoji model, judged by a second tiny CLIP: every figure
is written into the model's JSON, and the generator's own CLIP is refused as the evaluator."""

import json
import shutil

import pytest

from minidiff.__main__ import main
from minidiff.measure.emoji_report import BARS, bar_report, mean_over_seeds


def test_the_command_measures_and_records_every_figure(tiny_emoji_model, tiny_evaluator, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(tiny_emoji_model[0], model)
    main(["evaluate-emoji", "--model", str(model), "--evaluator", str(tiny_evaluator), "--n", "6", "--limit", "4",
          "--steps", "2", "--style-steps", "3", "--record"])
    printed = capsys.readouterr().out
    assert "r_precision ratio" in printed and "recorded in" in printed
    recorded = json.loads((model / "model.json").read_text())["metrics"]["emoji_dpm++_2_steps_guidance_3.0"]
    assert recorded["r_precision"]["images"] == 6 and 0 <= recorded["r_precision"]["generated"] <= 1
    assert recorded["frechet"]["images"] == 4 and recorded["frechet"]["generated_vs_test"] >= 0
    assert recorded["heldout_tone"]["images"] == 4 and recorded["heldout_style"]["images"] == 4
    assert 0 <= recorded["heldout_tone"]["tone_real_through_autoencoder"] <= 1
    assert 0 <= recorded["heldout_style"]["style_generated_noto"] <= 1
    assert 0 <= recorded["memorisation"]["near_copy_share"] <= 1 and "nearest" not in recorded["memorisation"]
    assert "--evaluator" in recorded["command"] and "--limit 4" in recorded["command"]


def test_the_generators_own_clip_is_refused_as_the_evaluator(tiny_emoji_model, tiny_clip):
    with pytest.raises(SystemExit, match="the evaluator is the CLIP the generator reads its prompts with"):
        main(["evaluate-emoji", "--model", str(tiny_emoji_model[0]), "--evaluator", str(tiny_clip), "--n", "2"])
    with pytest.raises(SystemExit, match="--n must be at least 1"):
        main(["evaluate-emoji", "--model", str(tiny_emoji_model[0]), "--n", "0"])
    with pytest.raises(SystemExit, match="--seeds must differ"):
        main(["evaluate-emoji", "--model", str(tiny_emoji_model[0]), "--n", "2", "--seeds", "1", "1"])


def test_several_seeds_record_their_mean_and_each_seeds_figures(tiny_emoji_model, tiny_evaluator, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(tiny_emoji_model[0], model)
    main(["evaluate-emoji", "--model", str(model), "--evaluator", str(tiny_evaluator), "--n", "6", "--limit", "4",
          "--steps", "2", "--style-steps", "3", "--seeds", "0", "1", "--record"])
    recorded = json.loads((model / "model.json").read_text())["metrics"]["emoji_dpm++_2_steps_guidance_3.0"]
    assert recorded["seeds"] == [0, 1] and set(recorded["by_seed"]) == {"0", "1"} and "seed" not in recorded
    tones = [recorded["by_seed"][seed]["tone read (generated)"] for seed in ("0", "1")]
    assert recorded["heldout_tone"]["tone_generated"] == pytest.approx(sum(tones) / 2, abs=1e-4)
    assert "--seeds 0 1" in recorded["command"] and "(seeds " in capsys.readouterr().out


def test_the_mean_over_seeds_averages_what_differs_and_keeps_what_does_not():
    def result(seed, generated, real, tone):
        return {"seed": seed, "sampler": "dpm++", "evaluator": "abc",
                "r_precision": {"generated": generated, "real": real, "ratio": generated / real, "images": 500},
                "heldout_tone": {"tone_generated": tone, "thing_top5_generated": 0.9, "images": 326},
                "heldout_style": {"style_generated": 0.85, "images": 95}}

    combined = mean_over_seeds([result(0, 0.8, 1.0, 0.795), result(1, 0.9, 0.8, 0.816)])
    assert combined["seeds"] == [0, 1] and combined["sampler"] == "dpm++" and combined["evaluator"] == "abc"
    assert combined["r_precision"]["generated"] == pytest.approx(0.85) and combined["r_precision"]["images"] == 500
    assert combined["r_precision"]["ratio"] == pytest.approx(0.85 / 0.9, abs=1e-4)  # of the means, not the ratios'
    assert combined["heldout_tone"]["tone_generated"] == pytest.approx(0.8055)
    assert combined["by_seed"]["0"]["tone read (generated)"] == 0.795
    lines = dict(line.split(": ", 1) for line in bar_report(combined))
    assert lines["tone read (generated)"] == "80.5% (seeds 79.5% ... 81.6%) (bar 80%) reached"
    with pytest.raises(ValueError, match="at least one"):
        mean_over_seeds([])


def test_each_bar_reads_reached_only_at_or_above_what_the_course_asks():
    result = {"r_precision": {"ratio": 0.70}, "heldout_tone": {"tone_generated": 0.7999, "thing_top5_generated": None},
              "heldout_style": {"style_generated": 0.95}}
    lines = dict(line.split(": ", 1) for line in bar_report(result))
    assert list(lines) == list(BARS)
    assert lines["r_precision ratio"] == "70.0% (bar 70%) reached"  # exactly at the bar counts
    assert lines["tone read (generated)"] == "80.0% (bar 80%) NOT reached"  # 79.99% prints as 80.0% but falls short
    assert lines["thing in top 5 (generated)"] == "- (bar 50%) NOT reached"  # not measured
    assert lines["style read (generated)"].endswith("reached") and "NOT" not in lines["style read (generated)"]
