"""resolve_device: auto picks the best device there is; a device that is not there is a clear error.
device_description: the name a benchmark records."""

import pytest
import torch

from minidiff.files.device import device_description, resolve_device


def test_auto_and_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")


def test_a_device_this_machine_lacks_or_torch_does_not_know_is_a_value_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA GPU; use cpu or auto"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="no MPS"):
        resolve_device("mps")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    assert resolve_device("auto") == torch.device("cpu")  # auto falls back instead of failing


def test_the_cpu_is_described_by_its_model_name(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\n")
    assert device_description("cpu", cpuinfo) == "Intel(R) Xeon(R) Processor"
    assert device_description(torch.device("cpu"), tmp_path / "absent") not in ("", "Intel(R) Xeon(R) Processor")
