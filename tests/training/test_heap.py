"""keep_freed_memory: the training commands raise glibc's mmap and trim thresholds."""

from __future__ import annotations

import ctypes
import platform
import subprocess
import sys

import pytest

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_keep_freed_memory_keeps_a_freed_block_mapped():
    """After the call a freed 4 MiB block stays in the process (the next allocation of
    that size reuses it, with no new mapping); with glibc's defaults it is unmapped on free.
    Each case runs in a fresh interpreter: the setting is process-wide."""
    probe = (
        "import ctypes, sys\n"
        "from mmtk.training.heap import keep_freed_memory\n"
        "if sys.argv[1] == 'keep': assert keep_freed_memory()\n"
        "libc = ctypes.CDLL('libc.so.6'); libc.malloc.restype = ctypes.c_void_p; libc.free.argtypes = [ctypes.c_void_p]\n"
        "first = libc.malloc(4 << 20); libc.free(first)\n"
        "maps = open('/proc/self/maps').read()\n"
        "print(f'{first:x}' in maps.replace('-', ' ').split() or any(int(a, 16) <= first < int(b, 16) "
        "for a, b in (line.split()[0].split('-') for line in maps.splitlines())))\n"
    )
    kept = subprocess.run([sys.executable, "-c", probe, "keep"], capture_output=True, text=True, check=True).stdout.strip()
    default = subprocess.run([sys.executable, "-c", probe, "default"], capture_output=True, text=True, check=True).stdout.strip()
    assert (kept, default) == ("True", "False")
