"""Audio for mmtk: decoding any audio or video file to a mono waveform at a chosen rate
(``decode``) and the hand-built audio features computed from it (``features``).

Both modules import librosa, soundfile and PyAV inside their functions only.
"""

from __future__ import annotations

from mmtk.audio.decode import MIN_DURATION_S, SILENCE_PEAK, load_audio
from mmtk.audio.features import AUDIO_STATS_LAYOUT, MfccExtractor, audio_stats, delta_width

__all__ = ["AUDIO_STATS_LAYOUT", "MIN_DURATION_S", "SILENCE_PEAK", "MfccExtractor", "audio_stats", "delta_width", "load_audio"]
