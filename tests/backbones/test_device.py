"""resolve_device and the CPU thread defaults."""

from __future__ import annotations

import pytest

from mmtk.device import cpu_threads_per_process, resolve_device, usable_cores
from mmtk.errors import UsageError


def test_cpu_and_auto():
    import torch

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


def test_cuda_without_a_gpu_is_a_usage_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(UsageError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_unknown_device_is_rejected():
    with pytest.raises(UsageError, match="unknown device 'tpu'"):
        resolve_device("tpu")


def test_one_torch_thread_per_process_by_default(monkeypatch):
    monkeypatch.delenv("MMTK_TORCH_THREADS", raising=False)
    assert cpu_threads_per_process() == 1
    monkeypatch.setenv("MMTK_TORCH_THREADS", "3")
    assert cpu_threads_per_process() == 3
    monkeypatch.setenv("MMTK_TORCH_THREADS", "many")
    with pytest.raises(UsageError):
        cpu_threads_per_process()
    assert usable_cores() >= 1
