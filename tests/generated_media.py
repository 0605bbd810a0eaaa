"""Generated media shared by the audio and video tests, written with PyAV and
soundfile (no system ffmpeg): tones, and H.264 MP4s with frames at chosen presentation
times (constant or variable rate), each a flat grey whose level tells which frame it
is, optionally shown rotated or with an AAC audio track."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


def tone(seconds: float, rate: int, hz: float = 440.0, amplitude: float = 0.5, seed: int = 0, noise: float = 0.01) -> np.ndarray:
    """A sine at ``hz`` plus a little noise (so no two clips share bytes), float32."""
    t = np.arange(int(round(seconds * rate))) / rate
    noise = np.random.default_rng(seed).normal(0.0, noise, t.size)
    return (amplitude * np.sin(2 * np.pi * hz * t) + noise).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    import soundfile

    soundfile.write(str(path), samples, rate)
    return path


WIDTH, HEIGHT = 64, 48


def level(index: int) -> int:
    """The grey level of frame ``index``: far enough apart to survive H.264."""
    return 20 + 7 * (index % 32)


def frame_index(image) -> int:
    """Which frame a decoded (PIL) image is, from its mean grey level."""
    return int(round((float(np.asarray(image.convert("L"), dtype=np.float64).mean()) - 20) / 7))


def write_video(
    path: Path,
    times: list[float],
    *,
    images: list[np.ndarray] | None = None,
    rotation: int = 0,
    gop: int | None = None,
    b_frames: int = 0,
    audio: np.ndarray | None = None,
    audio_rate: int = 16000,
) -> Path:
    """An H.264 MP4 with one frame at each of ``times`` (seconds, millisecond clock).

    Frame i is ``images[i]`` (HxWx3 uint8) or flat ``level(i)`` grey. ``rotation``
    stores a display matrix turning the picture counter-clockwise by that many degrees
    on playback; ``gop`` sets the keyframe interval; ``audio`` adds an AAC track."""
    import av

    with av.open(str(path), "w") as container:
        options = {"bf": str(b_frames)}
        if gop is not None:
            options["g"] = str(gop)
        video = container.add_stream("libx264", rate=1000, options=options)
        first = images[0] if images is not None else None
        video.height, video.width = first.shape[:2] if first is not None else (HEIGHT, WIDTH)
        video.pix_fmt = "yuv420p"
        video.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            video.set_display_rotation(rotation)
        sound = container.add_stream("aac", rate=audio_rate, layout="mono") if audio is not None else None
        for index, time in enumerate(times):
            pixels = images[index] if images is not None else np.full((HEIGHT, WIDTH, 3), level(index), np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = int(round(time * 1000))
            frame.time_base = Fraction(1, 1000)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if sound is not None:
            for start in range(0, audio.size, 1024):
                piece = audio[start : start + 1024].reshape(1, -1).astype(np.float32)
                chunk = av.AudioFrame.from_ndarray(piece, format="flt", layout="mono")
                chunk.sample_rate = audio_rate
                chunk.pts = start
                container.mux(sound.encode(chunk))
            container.mux(sound.encode(None))
    return path


def constant_rate(seconds: float, fps: float) -> list[float]:
    return [i / fps for i in range(int(round(seconds * fps)))]
