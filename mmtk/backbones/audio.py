"""Audio backbones: ``mfcc`` (a sequence of MFCC frames) and ``audio-stats`` (one
summary vector of librosa descriptors). Both read the ``audio`` column (wav, flac, ogg,
mp3, ...) or the audio track of a video (``mmtk.audio.decode``) and need no weights.

The fingerprint covers every setting that changes the numbers (rate, window, hop, mel
bands, coefficients) and librosa's major.minor version, whose filterbanks and
resampler they come from.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from mmtk.backbones.base import BackboneConfig, make_fingerprint, package_version, require_modality, require_no_argument
from mmtk.backbones.registry import BACKBONES

MFCC = "mfcc"
AUDIO_STATS = "audio-stats"

#: The MFCC settings of issue 3: 20 coefficients + 20 derivatives, Hann window 40 ms,
#: hop 32 ms, at 16 kHz; 40 mel bands (with a 640-point FFT, 128 bands would leave
#: empty filters at low frequencies).
MFCC_SETTINGS = {"sample_rate": 16000, "n_mfcc": 20, "window_s": 0.040, "hop_s": 0.032, "n_mels": 40, "top_db": 80.0}


def _librosa_version() -> str:
    return ".".join(package_version("librosa").split(".")[:2])


def _audio_only(name: str, arg: str | None, modality: str | None) -> None:
    require_no_argument(name, arg)
    require_modality(
        name, modality, "audio", "name an audio column with --audio-column COLUMN (or a video column for its audio track)"
    )


@BACKBONES.register(MFCC, help="20 MFCCs + 20 deltas per 32 ms frame at 16 kHz (audio, sequence of 40-d frames)")
def resolve_mfcc(arg: str | None, modality: str | None) -> BackboneConfig:
    """Resolve ``mfcc`` (no argument; audio columns or a video's audio track)."""
    _audio_only(MFCC, arg, modality)
    identity = {"settings": MFCC_SETTINGS, "deltas": "librosa.feature.delta width<=9", "librosa": _librosa_version()}
    return BackboneConfig(
        spec=MFCC,
        name=MFCC,
        modality="audio",
        fingerprint=make_fingerprint(MFCC, identity),
        builder=build_mfcc,
        settings=dict(MFCC_SETTINGS),
        dim=2 * MFCC_SETTINGS["n_mfcc"],
        # Per-item work is independent; batches only amortise the worker hand-off:
        # 128 clips per hand-off cut the pool's CPU overhead to a third of 32's.
        cpu_batch_size=128,
        cuda_batch_size=32,
        kind="sequence",
        # Each clip is a few hundred numpy calls on small arrays, all under the GIL:
        # threads gave no speed-up, processes scale with the cores.
        cpu_workers="processes",
    )


@BACKBONES.register(AUDIO_STATS, help="librosa spectral descriptors at 22.05 kHz, mean+std over time (audio, 362-d)")
def resolve_audio_stats(arg: str | None, modality: str | None) -> BackboneConfig:
    """Resolve ``audio-stats`` (no argument); the layout is in ``mmtk.audio.features``."""
    from mmtk.audio.features import AUDIO_STATS_DIM, AUDIO_STATS_LAYOUT, AUDIO_STATS_N_FFT, AUDIO_STATS_HOP, AUDIO_STATS_RATE

    _audio_only(AUDIO_STATS, arg, modality)
    identity = {
        "rate": AUDIO_STATS_RATE,
        "n_fft": AUDIO_STATS_N_FFT,
        "hop": AUDIO_STATS_HOP,
        "layout": AUDIO_STATS_LAYOUT,
        "pooling": "mean+std",
        "librosa": _librosa_version(),
    }
    return BackboneConfig(
        spec=AUDIO_STATS,
        name=AUDIO_STATS,
        modality="audio",
        fingerprint=make_fingerprint(AUDIO_STATS, identity),
        builder=build_audio_stats,
        settings={"sample_rate": AUDIO_STATS_RATE},
        dim=AUDIO_STATS_DIM,
        cpu_batch_size=4,
        cuda_batch_size=4,
        cpu_workers="processes",
    )


class WaveformEncoder:
    """Decodes each item to a mono waveform at ``sample_rate`` (``load``) and applies
    ``compute`` to each waveform (``encode``). Runs on the CPU whatever the device: these
    features are numpy/scipy code, and the worker threads share one instance."""

    def __init__(self, compute, sample_rate: int, dim: int, sequence: bool):
        self.compute = compute
        self.sample_rate = sample_rate
        self.dim = dim
        self.sequence = sequence

    def load(self, value: str) -> np.ndarray:
        from mmtk.audio.decode import load_audio

        return load_audio(value, self.sample_rate)

    def collate(self, items: Sequence[Any]) -> list[np.ndarray]:
        return list(items)  # clips differ in length; each is computed on its own

    def encode(self, batch: list[np.ndarray]) -> np.ndarray | list[np.ndarray]:
        features = [self.compute(waveform) for waveform in batch]
        return features if self.sequence else np.stack(features).astype(np.float32)


def build_mfcc(config: BackboneConfig, device: str) -> WaveformEncoder:
    """An encoder sharing one ``MfccExtractor`` (its filterbank is built here, once)."""
    from mmtk.audio.features import MfccExtractor

    extractor = MfccExtractor(**config.settings)
    return _warmed(WaveformEncoder(extractor, extractor.sample_rate, extractor.dim, sequence=True))


def build_audio_stats(config: BackboneConfig, device: str) -> WaveformEncoder:
    from mmtk.audio.features import AUDIO_STATS_DIM, audio_stats

    rate = config.settings["sample_rate"]
    return _warmed(WaveformEncoder(lambda waveform: audio_stats(waveform, rate), rate, AUDIO_STATS_DIM, sequence=False))


def _warmed(encoder: WaveformEncoder) -> WaveformEncoder:
    """Run the encoder once on a short tone so that the modules librosa loads lazily
    (and numba compiles) are loaded here: forked extraction workers then inherit them
    instead of each paying about a second on its first clip."""
    import soundfile  # noqa: F401  (the decoders load_audio uses)
    import soxr  # noqa: F401

    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(encoder.sample_rate // 10) / encoder.sample_rate)).astype(np.float32)
    encoder.encode([tone])
    return encoder
