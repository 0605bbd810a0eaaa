"""MfccExtractor equals librosa.feature.mfcc; derivatives work on clips shorter than
librosa's default delta window; audio-stats has its documented layout."""

from __future__ import annotations

import numpy as np
import pytest

from generated_media import tone
from mmtk.audio import AUDIO_STATS_LAYOUT, MfccExtractor, audio_stats, delta_width
from mmtk.audio.features import AUDIO_STATS_DIM, AUDIO_STATS_FRAME_DIM, first_derivative
from mmtk.backbones import resolve_backbone


@pytest.fixture(scope="module")
def extractor():
    return MfccExtractor(**resolve_backbone("mfcc").settings)


@pytest.mark.parametrize("seconds", [0.05, 0.3, 1.7])
def test_mfcc_equals_librosa(extractor, seconds):
    import librosa

    rng = np.random.default_rng(0)
    waveform = (tone(seconds, 16000, 300) + rng.normal(0, 0.05, int(seconds * 16000))).astype(np.float32)
    expected = librosa.feature.mfcc(
        y=waveform, sr=16000, n_mfcc=20, n_fft=640, hop_length=512, window="hann", n_mels=40
    )
    ours = extractor.mfcc(waveform)
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-3 * np.abs(expected).max())


def test_frames_hold_mfccs_then_their_derivatives(extractor):
    import librosa

    waveform = tone(1.0, 16000, 440)
    frames = extractor(waveform)
    assert frames.dtype == np.float32
    # 40 ms Hann window, 32 ms hop at 16 kHz, centred: 1 + 16000 // 512 frames.
    assert frames.shape == (1 + 16000 // 512, 40)
    coefficients = extractor.mfcc(waveform)
    np.testing.assert_allclose(frames[:, :20], coefficients.T, atol=1e-4)
    np.testing.assert_allclose(frames[:, 20:], librosa.feature.delta(coefficients).T, atol=1e-4)


@pytest.mark.parametrize(("frames", "width"), [(1, 3), (2, 3), (3, 3), (4, 3), (5, 5), (8, 7), (9, 9), (40, 9)])
def test_delta_width_fits_the_clip(frames, width):
    assert delta_width(frames) == width


@pytest.mark.parametrize("frames", [1, 2, 3, 4, 7, 8, 9, 10, 31])
def test_first_derivative_equals_librosa_delta(frames):
    import librosa

    coefficients = np.random.default_rng(frames).normal(size=(20, frames)).astype(np.float32)
    mode = "interp" if frames >= 3 else "nearest"
    expected = librosa.feature.delta(coefficients, width=delta_width(frames), mode=mode)
    np.testing.assert_allclose(first_derivative(coefficients), expected, atol=1e-5)


@pytest.mark.parametrize("samples", [160, 600, 1200, 2200, 4000])
def test_clips_shorter_than_the_delta_window_work(extractor, samples):
    import librosa

    waveform = tone(samples / 16000, 16000, 500)
    with pytest.raises(Exception):
        librosa.feature.delta(extractor.mfcc(waveform))  # librosa's default width 9 fails here
    frames = extractor(waveform)
    assert frames.shape == (1 + samples // 512, 40)
    assert np.isfinite(frames).all()


def test_a_spoken_digit_at_8khz_gives_a_frame_sequence(extractor):
    from audio_media import SHARED_DATA
    from mmtk.audio import load_audio

    recording = SHARED_DATA / "fsdd" / "recordings" / "0_george_0.wav"
    if not recording.exists():
        pytest.skip("FSDD recordings are not in ../shared/data")
    waveform = load_audio(recording, 16000)
    assert extractor(waveform).shape == (1 + waveform.size // 512, 40)


def test_audio_stats_layout_and_pooling():
    assert sum(width for _, width in AUDIO_STATS_LAYOUT) == AUDIO_STATS_FRAME_DIM
    assert AUDIO_STATS_DIM == 2 * AUDIO_STATS_FRAME_DIM == resolve_backbone("audio-stats").dim
    low, high = audio_stats(tone(0.5, 22050, 220, noise=0)), audio_stats(tone(0.5, 22050, 2000, noise=0))
    assert low.shape == (AUDIO_STATS_DIM,) and np.isfinite(low).all()
    centroid = [name for name, _ in AUDIO_STATS_LAYOUT].index("spectral_centroid")
    offset = sum(width for _, width in AUDIO_STATS_LAYOUT[:centroid])
    # The mean spectral centroid (kHz) follows the tone's pitch.
    assert low[offset] < 0.6 < 1.5 < high[offset] < 2.5
    assert (low[AUDIO_STATS_FRAME_DIM:] >= 0).all()  # the second half are standard deviations
    assert np.isfinite(audio_stats(tone(0.05, 22050, 440))).all()  # shorter than one n_fft window
