"""Damaged copies of generated videos for the video tests (the videos themselves come
from ``generated_media``)."""

from __future__ import annotations

from pathlib import Path


def zero_middle(source: Path, dest: Path, count: int = 3000) -> Path:
    """A copy of ``source`` with ``count`` bytes zeroed a third of the way in (inside
    the coded frames of a PyAV-written MP4, whose index comes last)."""
    data = bytearray(source.read_bytes())
    start = len(data) // 3
    data[start : start + count] = bytes(count)
    dest.write_bytes(bytes(data))
    return dest


def zero_frames(source: Path, dest: Path) -> Path:
    """A copy of ``source`` whose coded frames (the mdat box) are all zeros: the
    container still opens, but no packet decodes."""
    data = bytearray(source.read_bytes())
    start = data.index(b"mdat") + 4
    end = data.index(b"moov") - 4
    data[start:end] = bytes(end - start)
    dest.write_bytes(bytes(data))
    return dest
