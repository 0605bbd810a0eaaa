"""Which device extraction runs on, and how many CPU threads and processes it uses.

CPU defaults come from measurements on a 2-core machine (issue 2, "Benchmarks"):
- One torch intra-op thread per process. Two worker processes of one thread each ran
  efficientnet-lite0 about twice as fast as one process with two threads, and when
  another process was busy on the same cores, a two-thread process ran up to 36x slower
  (its threads wait for each other at every operator). One thread per process has no
  such barrier, so it degrades gracefully on a shared machine.
- As many worker processes as usable cores, each decoding its own images, so decoding
  (1.4-2.6 ms per image) hides behind the other worker's forward pass (36-45 ms).
"""

from __future__ import annotations

import os
import sys

from mmtk.errors import UsageError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` -> ``"cuda"`` when a GPU is usable, else ``"cpu"``; ``"cpu"``,
    ``"cuda"`` and ``"cuda:N"`` are checked and returned. Asking for CUDA without a
    usable GPU raises ``UsageError``."""
    wanted = (device or "auto").strip().lower()
    if wanted not in DEVICE_CHOICES and not (wanted.startswith("cuda:") and wanted[5:].isdigit()):
        raise UsageError(f"unknown device {device!r}", "choose auto, cpu, cuda or cuda:N")
    if wanted == "cpu" or (wanted == "auto" and not gpu_driver_present()):
        return "cpu"
    import torch

    available = torch.cuda.is_available()
    if wanted == "auto":
        return "cuda" if available else "cpu"
    if not available:
        raise UsageError(f"--device {wanted} was asked for but no CUDA GPU is usable here", "use --device cpu or auto")
    if ":" in wanted and int(wanted[5:]) >= torch.cuda.device_count():
        raise UsageError(f"--device {wanted}: only {torch.cuda.device_count()} CUDA device(s)", "pick an existing index")
    return wanted


def gpu_driver_present() -> bool:
    """Whether a GPU driver is loaded, checked without importing torch: on a machine
    with none, ``auto`` resolves to CPU in microseconds instead of a 1-2 s torch import
    (which would dominate a fully cached re-run). Outside Linux, assume there may be one."""
    if not sys.platform.startswith("linux"):
        return True
    return any(os.path.exists(p) for p in ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/kfd"))


def usable_cores() -> int:
    """CPU cores this process may run on (respects taskset/cgroup affinity)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def cpu_threads_per_process() -> int:
    """Torch intra-op threads for each CPU worker process: 1 (see the module docstring);
    ``MMTK_TORCH_THREADS`` overrides it for machines where measurements say otherwise."""
    value = os.environ.get("MMTK_TORCH_THREADS", "1")
    if not value.isdigit() or int(value) < 1:
        raise UsageError(f"MMTK_TORCH_THREADS={value!r} is not a positive integer", "unset it or set e.g. 1")
    return int(value)


def configure_cpu_threads(threads: int) -> int:
    """Set torch's intra-op thread count for the calling thread (OpenMP keeps it per
    thread: new threads start at one per core whatever the main thread set) and one
    inter-op thread for the process; returns the previous intra-op count so an
    in-process caller can restore it."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only settable before the first parallel op; harmless after
        pass
    return previous
