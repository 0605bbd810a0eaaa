"""Keep freed memory in the process heap during training (glibc only).

A training step allocates and frees the same large activation buffers every step. With
glibc's defaults, blocks of 128 KB and more are mapped fresh from the kernel and unmapped
on free, and the top of the heap is trimmed once 128 KB are free, so every step pays the
page faults of memory it had a moment ago: ``mult`` at its reference shapes took 16,700
minor faults and 26 ms of system time per step, against 1,200 and 2 ms with the memory
kept (BENCHMARKS.md, "mult against the reference MulT"). Raising both thresholds keeps
the peak of one step mapped for the next, which is what a training process wants; the
cost is that memory freed after the peak stays with the process until it exits.

Applied by the commands that train (``mmtk train``, ``distill``, ``tune``), not on
import: a library must not change a host application's allocator on its own.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt parameters, from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Blocks above 32 MiB (none at mult's reference shapes) are still mapped per allocation,
# so a rare huge buffer does not stay in, and fragment, the heap.
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 1024 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; return whether both
    took effect (False on another C library or platform, where nothing changes)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) & bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
