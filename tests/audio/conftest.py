"""Fixtures for the audio tests: a folder of generated clips, good and bad."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audio_media import write_bytes
from generated_media import tone, write_wav


@pytest.fixture
def clips(tmp_path) -> dict[str, Path]:
    """Named audio files: 1 s tones at several rates/formats, a 0.1 s clip, silence,
    noise, and a file that is not audio at all."""
    rng = np.random.default_rng(1)
    stereo = np.stack([tone(1.0, 44100, 330), tone(1.0, 44100, 330, seed=2)], axis=1)
    return {
        "tone16k": write_wav(tmp_path / "tone16k.wav", tone(1.0, 16000, 440), 16000),
        "tone8k": write_wav(tmp_path / "tone8k.wav", tone(1.0, 8000, 880, seed=3), 8000),
        "stereo44k": write_wav(tmp_path / "stereo44k.wav", stereo, 44100),
        "flac": write_wav(tmp_path / "tone.flac", tone(0.5, 22050, 550, seed=4), 22050),
        "ogg": write_wav(tmp_path / "tone.ogg", tone(0.5, 22050, 660, seed=5), 22050),
        "short": write_wav(tmp_path / "short.wav", tone(0.1, 16000, 500, seed=6), 16000),
        "noise": write_wav(tmp_path / "noise.wav", rng.uniform(-0.5, 0.5, 8000).astype(np.float32), 16000),
        "silent": write_wav(tmp_path / "silent.wav", np.zeros(16000, np.float32), 16000),
        "tiny": write_wav(tmp_path / "tiny.wav", tone(0.002, 16000, seed=7), 16000),
        "empty": write_wav(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000),
        "garbage": write_bytes(tmp_path / "garbage.wav", b"RIFF this is not a wave file at all" * 10),
    }

