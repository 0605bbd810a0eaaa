"""Hand-built audio features: MFCCs with their derivatives per frame (``MfccExtractor``)
and one summary vector of librosa's spectral descriptors (``audio_stats``).

``MfccExtractor`` computes exactly what ``librosa.feature.mfcc`` computes (centred STFT
with a Hann window, power spectrum, mel filterbank, ``power_to_db`` with ``top_db=80``,
orthonormal DCT-II), but builds the mel filterbank and the window once per extractor:
librosa rebuilds the filterbank on every call, which is about half the per-file cost
for short clips.

``audio_stats`` layout: one vector of ``2 * AUDIO_STATS_FRAME_DIM`` = 362 floats; the
first 181 are the means over frames of the per-frame descriptors below, the next 181
their standard deviations, in the same order (``AUDIO_STATS_LAYOUT`` lists the
(name, width) blocks):

====================  =====  ===================================================
block                 width  per-frame value (22.05 kHz, n_fft 2048, hop 512)
====================  =====  ===================================================
stft_log_power        1      log10 of the mean STFT power of the frame
mfcc                  20     librosa.feature.mfcc (20 coefficients)
chroma_stft           12     librosa.feature.chroma_stft (pitch classes C..B)
spectral_centroid     1      Hz / 1000
spectral_bandwidth    1      Hz / 1000
spectral_rolloff      1      Hz / 1000 (85 % roll-off)
zero_crossing_rate    1      fraction of sign changes
pitch                 1      piptrack: pitch (Hz / 1000) of the strongest bin, 0 when none
onset_strength        1      librosa.onset.onset_strength
melspectrogram        128    power_to_db of the 128-band mel spectrogram
spectral_contrast     7      librosa.feature.spectral_contrast (6 bands + residual)
tonnetz               6      librosa.feature.tonnetz of the harmonic part's chroma
harmonic_ratio        1      harmonic / total power (librosa.effects.harmonic)
====================  =====  ===================================================
"""

from __future__ import annotations

import numpy as np

#: Widest first-derivative window (librosa.feature.delta's default).
DELTA_WIDTH = 9

AUDIO_STATS_RATE = 22050
AUDIO_STATS_N_FFT = 2048
AUDIO_STATS_HOP = 512
AUDIO_STATS_LAYOUT: tuple[tuple[str, int], ...] = (
    ("stft_log_power", 1),
    ("mfcc", 20),
    ("chroma_stft", 12),
    ("spectral_centroid", 1),
    ("spectral_bandwidth", 1),
    ("spectral_rolloff", 1),
    ("zero_crossing_rate", 1),
    ("pitch", 1),
    ("onset_strength", 1),
    ("melspectrogram", 128),
    ("spectral_contrast", 7),
    ("tonnetz", 6),
    ("harmonic_ratio", 1),
)
AUDIO_STATS_FRAME_DIM = sum(width for _, width in AUDIO_STATS_LAYOUT)
AUDIO_STATS_DIM = 2 * AUDIO_STATS_FRAME_DIM


def delta_width(frames: int) -> int:
    """The derivative window for a clip of ``frames`` frames: librosa's default 9 when the
    clip is that long, else the largest odd width that fits (librosa's ``interp`` mode
    raises when the window exceeds the clip), never below 3."""
    if frames >= DELTA_WIDTH:
        return DELTA_WIDTH
    return max(3, frames if frames % 2 else frames - 1)


def first_derivative(coefficients: np.ndarray) -> np.ndarray:
    """First derivative along frames (axis -1), equal to ``librosa.feature.delta(x,
    width=delta_width(T), order=1, mode="interp")`` (``mode="nearest"`` under 3 frames,
    where edge padding allows any length).

    Computed directly rather than through librosa: its Savitzky-Golay filter fits each
    edge by least squares in Python, 80 % of the MFCC cost of a short clip and all of it
    under the GIL. For a first-order fit the derivative is the regression slope
    ``sum(k * x[t + k]) / sum(k**2)`` over the window, and in ``interp`` mode every frame
    within half a window of an edge takes the slope of the first (last) full window."""
    x = np.asarray(coefficients, dtype=np.float32)
    frames = x.shape[-1]
    width = delta_width(frames)
    half = width // 2
    if frames < width:  # "nearest": repeat the edge frames, then slide the window
        x = np.concatenate([np.repeat(x[..., :1], half, axis=-1), x, np.repeat(x[..., -1:], half, axis=-1)], axis=-1)
    offsets = np.arange(-half, half + 1, dtype=np.float32)
    slopes = np.lib.stride_tricks.sliding_window_view(x, width, axis=-1) @ (offsets / np.sum(offsets**2))
    if slopes.shape[-1] == frames:
        return slopes
    return np.concatenate(
        [np.repeat(slopes[..., :1], half, axis=-1), slopes, np.repeat(slopes[..., -1:], half, axis=-1)], axis=-1
    )


class MfccExtractor:
    """MFCCs plus first derivatives per frame, with the mel filterbank built once.

    Thread-safe: it only reads its cached arrays. ``__call__(waveform)`` returns a
    float32 array (frames, 2 * n_mfcc): the MFCCs then their derivatives.
    """

    def __init__(self, sample_rate: int = 16000, n_mfcc: int = 20, window_s: float = 0.040, hop_s: float = 0.032, n_mels: int = 40, top_db: float = 80.0):
        import librosa

        self.sample_rate = sample_rate
        self.n_mfcc = n_mfcc
        self.n_fft = int(round(window_s * sample_rate))
        self.hop = int(round(hop_s * sample_rate))
        self.n_mels = n_mels
        self.top_db = top_db
        # The same periodic Hann window (scipy's get_window("hann", n, fftbins=True)) and
        # Slaney mel basis librosa.feature.mfcc uses.
        self.window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(self.n_fft) / self.n_fft)).astype(np.float32)
        self.mel_basis = librosa.filters.mel(sr=sample_rate, n_fft=self.n_fft, n_mels=n_mels).astype(np.float32)

    @property
    def dim(self) -> int:
        return 2 * self.n_mfcc

    def power_spectrum(self, waveform: np.ndarray) -> np.ndarray:
        """|STFT|^2, shape (1 + n_fft // 2, frames), centred frames with zero padding."""
        import scipy.fft

        half = self.n_fft // 2
        padded = np.pad(np.asarray(waveform, dtype=np.float32), (half, half))
        frames = 1 + (padded.size - self.n_fft) // self.hop
        strided = np.lib.stride_tricks.as_strided(
            padded, shape=(frames, self.n_fft), strides=(padded.strides[0] * self.hop, padded.strides[0]), writeable=False
        )
        spectrum = scipy.fft.rfft(strided * self.window, axis=1)
        return (spectrum.real**2 + spectrum.imag**2).T

    def mfcc(self, waveform: np.ndarray) -> np.ndarray:
        """MFCCs (n_mfcc, frames), equal to librosa.feature.mfcc with this extractor's settings."""
        import scipy.fft

        mel = self.mel_basis @ self.power_spectrum(waveform)
        log_mel = 10.0 * np.log10(np.maximum(mel, 1e-10))  # power_to_db, ref=1.0, amin=1e-10
        log_mel = np.maximum(log_mel, log_mel.max() - self.top_db)
        return scipy.fft.dct(log_mel, type=2, norm="ortho", axis=0)[: self.n_mfcc]

    def __call__(self, waveform: np.ndarray) -> np.ndarray:
        coefficients = self.mfcc(waveform)
        both = np.concatenate([coefficients, first_derivative(coefficients)], axis=0)
        return np.ascontiguousarray(both.T, dtype=np.float32)


def audio_stats(waveform: np.ndarray, sample_rate: int = AUDIO_STATS_RATE) -> np.ndarray:
    """The documented summary vector (``AUDIO_STATS_DIM`` floats) of one clip: per-frame
    descriptors (module docstring) pooled by mean and standard deviation over frames."""
    import warnings

    import librosa

    y = np.asarray(waveform, dtype=np.float32)
    sr, n_fft, hop = sample_rate, AUDIO_STATS_N_FFT, AUDIO_STATS_HOP
    with warnings.catch_warnings():
        # Clips shorter than n_fft warn that the window is larger than the signal; the
        # centred, zero-padded frames are still well defined.
        warnings.simplefilter("ignore", UserWarning)
        power = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop)) ** 2
        magnitude = np.sqrt(power)
        # The inverse STFT inside HPSS divides by the summed window, which is zero past
        # the end of a clip shorter than one window (NaN out); pad to a window, then trim.
        padded = np.pad(y, (0, max(0, n_fft - y.size)))
        harmonic = librosa.effects.harmonic(padded, n_fft=n_fft, hop_length=hop)[: y.size]
        harmonic_power = np.abs(librosa.stft(harmonic, n_fft=n_fft, hop_length=hop)) ** 2
        mel = librosa.feature.melspectrogram(S=power, sr=sr)
        pitches, strengths = librosa.piptrack(S=magnitude, sr=sr)
        strongest = strengths.argmax(axis=0)
        pitch = pitches[strongest, np.arange(pitches.shape[1])]
        frames = [
            np.log10(np.maximum(power.mean(axis=0), 1e-10))[None],
            librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=20),
            librosa.feature.chroma_stft(S=power, sr=sr),
            librosa.feature.spectral_centroid(S=magnitude, sr=sr) / 1000.0,
            librosa.feature.spectral_bandwidth(S=magnitude, sr=sr) / 1000.0,
            librosa.feature.spectral_rolloff(S=magnitude, sr=sr) / 1000.0,
            librosa.feature.zero_crossing_rate(y, frame_length=n_fft, hop_length=hop),
            pitch[None] / 1000.0,
            librosa.onset.onset_strength(S=librosa.power_to_db(mel), sr=sr)[None],
            librosa.power_to_db(mel),
            librosa.feature.spectral_contrast(S=magnitude, sr=sr),
            librosa.feature.tonnetz(sr=sr, chroma=librosa.feature.chroma_stft(S=harmonic_power, sr=sr)),
            (harmonic_power.sum(axis=0) / np.maximum(power.sum(axis=0), 1e-10))[None],
        ]
    count = min(block.shape[1] for block in frames)  # onset/zcr may differ by a frame
    stacked = np.concatenate([block[:, :count] for block in frames], axis=0)
    return np.concatenate([stacked.mean(axis=1), stacked.std(axis=1)]).astype(np.float32)
