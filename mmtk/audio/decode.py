"""Decode an audio file, or the audio track of a video file, to a mono float32 waveform.

Audio files (wav, flac, ogg, mp3, ...) are read with soundfile (libsndfile ships in its
wheel); video containers and anything libsndfile cannot read go through PyAV, whose
wheel carries FFmpeg's decoders, so no system ffmpeg is needed. The result is mixed to
mono and resampled to the rate the backbone asks for.

Items no feature can be computed from raise ``BadInput`` with the reason; extraction
adds the dataset file, line and item id (and ``--on-error skip`` skips them):
undecodable files, files without an audio track, clips shorter than ``MIN_DURATION_S``
and silent clips (peak below ``SILENCE_PEAK``).
"""

from __future__ import annotations

import os

import numpy as np

from mmtk.errors import BadInput, first_line

#: Clips shorter than this (10 ms, a quarter of an MFCC window) carry no usable spectrum.
MIN_DURATION_S = 0.01
#: A peak amplitude below this (about -80 dBFS of full scale 1.0) counts as silence:
#: every spectral feature of it would be the floor value.
SILENCE_PEAK = 1e-4

#: Containers that hold video (and maybe an audio track): decoded with PyAV directly.
VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".flv", ".mpg", ".mpeg", ".ts", ".3gp"})


def load_audio(path: str | os.PathLike, sample_rate: int) -> np.ndarray:
    """Mono float32 waveform of ``path`` at ``sample_rate`` Hz, values in about [-1, 1].

    Raises ``BadInput`` for an undecodable file, a video without audio, a clip shorter
    than ``MIN_DURATION_S`` or a silent clip."""
    path = os.fspath(path)
    if os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS:
        waveform = _decode_with_av(path, sample_rate)
    else:
        try:
            waveform, rate = _decode_with_soundfile(path)
        except BadInput:
            # libsndfile lacks some codecs (AAC in .m4a, Opus in .webm...); FFmpeg has them.
            waveform = _decode_with_av(path, sample_rate)
        else:
            waveform = _resample(waveform, rate, sample_rate)
    return _checked(waveform, sample_rate, path)


def _decode_with_soundfile(path: str) -> tuple[np.ndarray, int]:
    import soundfile

    try:
        data, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError, ValueError, TypeError) as exc:
        raise BadInput(f"cannot decode audio file {path}: {first_line(exc)}") from None
    # Mix channels to mono by their mean, as librosa.load does.
    return data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0], int(rate)


def _decode_with_av(path: str, sample_rate: int) -> np.ndarray:
    """The first audio stream of ``path`` through FFmpeg's decoder and resampler
    (mono float32 at ``sample_rate``)."""
    import av

    try:
        with av.open(path) as container:
            if not container.streams.audio:
                raise BadInput(f"{path} has no audio track")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            chunks = []
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):  # flush the resampler's buffered tail
                chunks.append(out.to_ndarray().reshape(-1))
    except BadInput:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise BadInput(f"cannot decode audio of {path}: {first_line(exc)}") from None
    return np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)


def _resample(waveform: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target or waveform.size == 0:
        return waveform
    import soxr

    # What librosa.resample does by default (res_type="soxr_hq"), called directly: going
    # through librosa imports numba and joblib, 0.7 s on the first clip of every worker.
    return soxr.resample(waveform, rate, target, quality="HQ").astype(np.float32, copy=False)


def _checked(waveform: np.ndarray, sample_rate: int, path: str) -> np.ndarray:
    if waveform.size == 0:
        raise BadInput(f"{path} holds no audio samples")
    if not np.all(np.isfinite(waveform)):
        raise BadInput(f"{path} holds non-finite audio samples (NaN or infinity)")
    duration = waveform.size / sample_rate
    if duration < MIN_DURATION_S:
        raise BadInput(f"{path} is too short: {duration * 1000:.1f} ms of audio (need at least {MIN_DURATION_S * 1000:.0f} ms)")
    peak = float(np.max(np.abs(waveform)))
    if peak < SILENCE_PEAK:
        raise BadInput(f"{path} is silent (peak amplitude {peak:.1e})")
    return waveform
