"""Media for the audio tests: where the shared real data lives, and an MP4 with an
AAC audio track (built on ``generated_media``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from generated_media import constant_rate, write_video

#: Real media shared by the team (two short videos); tests using it skip when absent.
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def write_mp4(path: Path, samples: np.ndarray | None, rate: int = 16000, seconds: float = 1.0) -> Path:
    """A small MP4: grey frames at 10 fps, plus ``samples`` as an AAC track when given."""
    return write_video(path, constant_rate(seconds, 10), audio=samples, audio_rate=rate)


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
