"""The U-Net benchmark (benchmarks/bench_unet.py): its paired speed ratio on made-up timings, and what --out stores."""

import json
import statistics

import pytest
import torch
from support.scripts import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("benchmarks/bench_unet.py")


def test_paired_ratios_are_the_quartiles_of_the_repeat_by_repeat_ratios(bench):
    theirs = [3.0, 2.4, 6.0, 2.0, 5.0]
    ours = [2.0, 2.0, 4.0, 1.0, 2.0]  # ratios 1.5, 1.2, 1.5, 2.0, 2.5
    low, mid, high = bench.paired_ratios(theirs, ours)
    assert mid == pytest.approx(1.5)
    assert (low, high) == pytest.approx((1.5, 2.0))  # the inclusive quartiles of 1.2, 1.5, 1.5, 2.0, 2.5
    assert low <= mid <= high


def test_a_slow_spell_shared_by_both_models_of_a_repeat_cancels(bench):
    ours = [1.0, 1.02, 0.99, 1.01, 1.0, 0.98]
    slow = [1.0, 1.0, 1.9, 2.1, 2.0, 1.0]  # the machine slows down for three of the six repeats
    theirs = [1.3 * t * s for t, s in zip(ours, slow)]
    slowed_ours = [t * s for t, s in zip(ours, slow)]
    assert bench.paired_ratios(theirs, slowed_ours) == pytest.approx((1.3, 1.3, 1.3))
    # each model's own times swing by a factor of 2
    assert max(slowed_ours) / min(slowed_ours) > 2


def test_quartiles_of_two_repeats_stay_within_their_ratios(bench):
    low, mid, high = bench.paired_ratios([1.003, 1.096], [1.0, 1.0])
    assert 1.003 <= low <= mid <= high <= 1.096


def test_one_repeat_gives_its_own_ratio(bench):
    assert bench.paired_ratios([2.0], [1.0]) == (2.0, 2.0, 2.0)


def test_out_stores_every_timing_and_the_command(bench, tmp_path, monkeypatch, capsys):
    out = tmp_path / "results" / "bench_unet.json"
    monkeypatch.setattr(bench, "sgemm_peak", lambda clock: 100.0)  # the real ones time products of 4096 x 4096
    monkeypatch.setattr(bench, "conv_speed", lambda clock: 50.0)
    monkeypatch.setattr("sys.argv", ["bench_unet.py", "--only", "class", "--channels", "8", "16", "--blocks", "1",
                                     "--batch", "2", "--repeats", "3", "--steps", "1", "--threads", "1",
                                     "--out", str(out)])
    threads = torch.get_num_threads()
    try:
        bench.main()
    finally:
        torch.set_num_threads(threads)  # main() sets the thread count for the rest of the process
    result = json.loads(out.read_text())
    assert result["command"] == f"benchmarks/bench_unet.py --only class --channels 8 16 --blocks 1 --batch 2 " \
                                f"--repeats 3 --steps 1 --threads 1 --out {out}"
    assert (result["threads"], result["sgemm_peak_gflops"], result["conv_gflops"]) == (1, 100.0, 50.0)
    assert "text" not in result
    pair = result["class"]
    for name in ("minidiff", "diffusers"):
        assert len(pair["train_seconds_per_step"][name]) == 3 and len(pair["inference_seconds_per_batch"][name]) == 3
        assert all(seconds > 0 for seconds in pair["train_seconds_per_step"][name])
        assert pair["forward_flops"][name] > 0
    times = pair["train_seconds_per_step"]
    assert pair["paired_quartiles"]["train"] == pytest.approx(
        list(bench.paired_ratios(times["diffusers"], times["minidiff"])))
    assert pair["ratio_of_medians"]["train"] == pytest.approx(
        statistics.median(times["diffusers"]) / statistics.median(times["minidiff"]))
    assert f"written to {out}" in capsys.readouterr().out


def test_compile_times_both_models_through_torch_compile(bench, tmp_path, monkeypatch):
    compiled = []

    def record_compile(model):  # a stand-in that records what it is given (compiling takes minutes on a CPU)
        compiled.append(type(model).__name__)
        return model

    out = tmp_path / "compiled.json"
    monkeypatch.setattr(bench, "sgemm_peak", lambda clock: 100.0)
    monkeypatch.setattr(bench, "conv_speed", lambda clock: 50.0)
    monkeypatch.setattr(bench.torch, "compile", record_compile)
    monkeypatch.setattr("sys.argv", ["bench_unet.py", "--only", "class", "--channels", "8", "16", "--blocks", "1",
                                     "--batch", "2", "--repeats", "1", "--steps", "1", "--threads", "1",
                                     "--compile", "--out", str(out)])
    threads = torch.get_num_threads()
    try:
        bench.main()
    finally:
        torch.set_num_threads(threads)
    assert sorted(compiled) == ["UNet", "UNet2DModel"]
    result = json.loads(out.read_text())
    assert result["compiled"] is True
    for name in ("minidiff", "diffusers"):
        assert result["class"]["forward_flops"][name] > 0  # counted on the eager model: compiled kernels hide them
        assert len(result["class"]["train_seconds_per_step"][name]) == 1
