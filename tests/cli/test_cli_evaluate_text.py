"""`python -m minidiff evaluate-text`: prompt adherence on both prompt sets, printed and recorded in the checkpoint."""

import shutil

import pytest

from minidiff.__main__ import main
from minidiff.measure.adherence import evaluation_prompts
from minidiff.models import load_checkpoint


def test_evaluate_text_measures_both_prompt_sets_and_records_them(tiny_text_model, capsys):
    captions, attributes = evaluation_prompts(6, "heldout", seed=0)
    assert all((a["colour"], a["shape"]) in {("purple", "triangle"), ("yellow", "square"), ("cyan", "circle")}
               for a in attributes)
    assert captions[0].startswith("a ") and len(set(captions)) > 1
    model = tiny_text_model.parent / "evaluated"
    shutil.copytree(tiny_text_model, model)
    main(["evaluate-text", "--model", str(model), "--n", "4", "--heldout-n", "3", "--steps", "2", "--record"])
    printed = capsys.readouterr().out
    assert "train_captions colour" in printed and "heldout_pairs colour+shape" in printed
    metrics = load_checkpoint(model)[1].metrics["adherence_dpm++_2_steps_guidance_3.0"]
    assert metrics["train_captions"]["n"] == 4 and metrics["heldout_pairs"]["n"] == 3
    assert 0 <= metrics["train_captions"]["colour"] <= 1


def test_evaluate_text_answers_a_class_model_and_a_missing_one_with_a_message():
    with pytest.raises(SystemExit, match="minidiff evaluate-text: .* is a class model, not a text model"):
        main(["evaluate-text", "--model", "mnist", "--n", "2", "--heldout-n", "2"])
    with pytest.raises(SystemExit, match="no checkpoint named 'nowhere'.*MINIDIFF_DATA"):
        main(["evaluate-text", "--model", "nowhere", "--n", "2", "--heldout-n", "2"])
