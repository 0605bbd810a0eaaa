"""load_audio: every format to mono float32 at the asked rate; the audio track of an
MP4 through PyAV; empty, silent, too short and undecodable files raise BadInput."""

from __future__ import annotations

import numpy as np
import pytest

from audio_media import SHARED_DATA, write_mp4
from generated_media import tone
from mmtk.audio import load_audio
from mmtk.backbones import BadInput


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(samples.size, 1 / rate)[spectrum.argmax()])


@pytest.mark.parametrize(
    ("name", "seconds", "hz"),
    [("tone16k", 1.0, 440), ("tone8k", 1.0, 880), ("stereo44k", 1.0, 330), ("flac", 0.5, 550), ("ogg", 0.5, 660)],
)
def test_files_decode_to_mono_at_the_requested_rate(clips, name, seconds, hz):
    waveform = load_audio(clips[name], 16000)
    assert waveform.dtype == np.float32 and waveform.ndim == 1
    assert abs(waveform.size - seconds * 16000) <= 0.01 * 16000
    assert abs(dominant_hz(waveform, 16000) - hz) < 5  # resampling kept the pitch


def test_short_clip_decodes(clips):
    assert load_audio(clips["short"], 16000).size == 1600


@pytest.mark.parametrize(
    ("name", "reason"),
    [("silent", "is silent"), ("empty", "no audio samples"), ("tiny", "too short"), ("garbage", "cannot decode")],
)
def test_unusable_clips_raise_bad_input_naming_the_file(clips, name, reason):
    with pytest.raises(BadInput, match=reason) as caught:
        load_audio(clips[name], 16000)
    assert str(clips[name]) in str(caught.value)


def test_audio_track_of_an_mp4_is_decoded(tmp_path):
    samples = tone(1.0, 16000, 440)
    path = write_mp4(tmp_path / "clip.mp4", samples)
    waveform = load_audio(path, 22050)
    assert abs(waveform.size - 22050) < 0.1 * 22050  # AAC adds a little priming/padding
    assert abs(dominant_hz(waveform, 22050) - 440) < 5


def test_video_without_audio_track_is_a_bad_input(tmp_path):
    path = write_mp4(tmp_path / "mute.mp4", None)
    with pytest.raises(BadInput, match="no audio track"):
        load_audio(path, 16000)


def test_real_video_audio_track(shared_videos):
    waveform = load_audio(shared_videos[0], 16000)
    assert waveform.size > 16000 and np.abs(waveform).max() > 0.01


@pytest.fixture
def shared_videos():
    videos = sorted((SHARED_DATA / "video").glob("*.mp4"))
    if not videos:
        pytest.skip("no videos in ../shared/data/video")
    return videos


def test_undecodable_video_is_a_bad_input(tmp_path):
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42 but nothing after" * 4)
    with pytest.raises(BadInput, match="cannot decode audio of .*broken.mp4"):
        load_audio(path, 16000)
