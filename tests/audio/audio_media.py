"""Generated media for the audio tests: tones written with soundfile, and an MP4 with a
video and an AAC audio track written with PyAV (no system ffmpeg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Real media shared by the team (two short videos); tests using it skip when absent.
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def tone(seconds: float, rate: int, hz: float = 440.0, amplitude: float = 0.5, seed: int = 0, noise: float = 0.01) -> np.ndarray:
    """A sine at ``hz`` plus a little noise (so no two clips share bytes), float32."""
    t = np.arange(int(round(seconds * rate))) / rate
    noise = np.random.default_rng(seed).normal(0.0, noise, t.size)
    return (amplitude * np.sin(2 * np.pi * hz * t) + noise).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    import soundfile

    soundfile.write(str(path), samples, rate)
    return path


def write_mp4(path: Path, samples: np.ndarray | None, rate: int = 16000, seconds: float = 1.0) -> Path:
    """A small MP4: grey frames at 10 fps, plus ``samples`` as an AAC track when given."""
    import av

    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("aac", rate=rate, layout="mono") if samples is not None else None
        for index in range(int(seconds * 10)):
            image = np.full((48, 64, 3), 40 + 10 * index, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if audio is not None:
            chunk = 1024
            for start in range(0, samples.size, chunk):
                piece = samples[start : start + chunk].reshape(1, -1).astype(np.float32)
                frame = av.AudioFrame.from_ndarray(piece, format="flt", layout="mono")
                frame.sample_rate = rate
                frame.pts = start
                container.mux(audio.encode(frame))
            container.mux(audio.encode(None))
    return path


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
