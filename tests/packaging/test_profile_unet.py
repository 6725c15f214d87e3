"""The forward-pass profile (benchmarks/profile_unet.py): how it names each operation's kind, and what --out stores."""

import json

import pytest
import torch
from support.scripts import load_script


@pytest.fixture(scope="module")
def profiler_script():
    return load_script("benchmarks/profile_unet.py")


@pytest.mark.parametrize("name, kind", [
    ("aten::mkldnn_convolution", "convolution"), ("aten::convolution_backward", "convolution"),
    ("aten::addmm", "matrix products and attention"), ("aten::mm", "matrix products and attention"),
    ("aten::_scaled_dot_product_flash_attention_for_cpu", "matrix products and attention"),
    ("aten::native_group_norm", "normalisation and activation"), ("aten::silu", "normalisation and activation"),
    ("aten::cat", "other"), ("aten::add", "other"), ("aten::copy_", "other"), ("aten::addcmul", "other"),
])
def test_each_operation_has_its_kind(profiler_script, name, kind):
    assert profiler_script.kind_of(name) == kind


def test_out_stores_the_median_milliseconds_of_each_kind(profiler_script, tmp_path, monkeypatch, capsys):
    out = tmp_path / "profile.json"
    monkeypatch.setattr("sys.argv", ["profile_unet.py", "--channels", "8", "16", "--batch", "2", "--passes", "3",
                                     "--out", str(out)])
    threads = torch.get_num_threads()
    try:
        profiler_script.main()
    finally:
        torch.set_num_threads(threads)  # main() sets the thread count for the rest of the process
    record = json.loads(out.read_text())
    assert record["command"] == f"benchmarks/profile_unet.py --channels 8 16 --batch 2 --passes 3 --out {out}"
    assert record["config"]["channels"] == [8, 16] and record["passes"] == 3
    for name in ("minidiff", "diffusers"):
        row = record["ms_per_forward"][name]
        assert list(row) == [*profiler_script.KINDS, "other", "total"]
        assert row["convolution"] > 0 and row["matrix products and attention"] > 0
        assert row["total"] >= max(value for kind, value in row.items() if kind != "total")
    assert "convolution" in capsys.readouterr().out
