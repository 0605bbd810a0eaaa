"""Frame sampling: which frames --fps and --frames take (constant and variable frame
rate, short videos), times from the first frame, rotation applied, corrupt data
skipped or reported, and seeking that returns exactly the frames decoding on would."""

from __future__ import annotations

import numpy as np
import pytest

from mmtk.backbones import BadInput
from mmtk.video import Sampling, sample_frames
from mmtk.video import decode
from generated_media import constant_rate, frame_index, write_video
from video_media import zero_frames, zero_middle

VARIABLE = [0.0, 0.1, 0.2, 1.3, 1.35, 2.9, 3.0, 3.05, 4.5]


def sampled(path, sampling):
    frames = list(sample_frames(path, sampling))
    return [round(f.time, 3) for f in frames], [frame_index(f.image) for f in frames]


@pytest.fixture(scope="module")
def ten_fps(tmp_path_factory):
    """2.5 s at 10 fps: frame i shown from i/10 s."""
    return write_video(tmp_path_factory.mktemp("video") / "ten_fps.mp4", constant_rate(2.5, 10))


@pytest.mark.parametrize(
    ("fps", "times"),
    [
        (1, [0.0, 1.0, 2.0]),
        (2, [0.0, 0.5, 1.0, 1.5, 2.0]),
        # 0.25 s chunks: the first frame at or after each chunk start.
        (4, [0.0, 0.3, 0.5, 0.8, 1.0, 1.3, 1.5, 1.8, 2.0, 2.3]),
        (0.5, [0.0, 2.0]),
    ],
)
def test_fps_takes_the_first_frame_of_each_chunk(ten_fps, fps, times):
    got_times, indices = sampled(ten_fps, Sampling(fps=fps))
    assert got_times == times
    assert indices == [round(t * 10) for t in times]  # the pixels are those frames'


@pytest.mark.parametrize(("frames", "times"), [(5, [0.0, 0.5, 1.0, 1.5, 2.0]), (4, [0.0, 0.7, 1.3, 1.9]), (1, [0.0])])
def test_frames_splits_the_whole_duration(ten_fps, frames, times):
    # The video lasts 2.5 s (its last frame is shown from 2.4 s for 0.1 s).
    got_times, indices = sampled(ten_fps, Sampling(frames=frames))
    assert got_times == times
    assert indices == [round(t * 10) for t in times]


def test_variable_frame_rate_samples_by_the_clock(tmp_path):
    path = write_video(tmp_path / "vfr.mp4", VARIABLE)
    # 1 s chunks: [1, 2) starts with 1.3, [2, 3) with 2.9, [3, 4) with 3.0 and [4, 5)
    # with 4.5; at 0.5 fps the chunk [2, 4) takes 2.9 and nothing is taken twice.
    assert sampled(path, Sampling(fps=1)) == ([0.0, 1.3, 2.9, 3.0, 4.5], [0, 3, 5, 6, 8])
    assert sampled(path, Sampling(fps=0.5)) == ([0.0, 2.9, 4.5], [0, 5, 8])
    # Two chunks of the 4.5 s span: [0, 2.25) and [2.25, 4.5].
    assert sampled(path, Sampling(frames=2)) == ([0.0, 2.9], [0, 5])


def test_times_count_from_the_first_frame(tmp_path):
    path = write_video(tmp_path / "late.mp4", [5.0 + t for t in constant_rate(2.0, 10)])
    assert sampled(path, Sampling(fps=1)) == ([0.0, 1.0], [0, 10])


@pytest.mark.parametrize("sampling", [Sampling(fps=1), Sampling(fps=0.1), Sampling(frames=1)])
def test_a_video_shorter_than_one_chunk_still_gives_its_first_frame(tmp_path, sampling):
    short = write_video(tmp_path / "short.mp4", [0.0, 0.04, 0.08])
    assert sampled(short, sampling) == ([0.0], [0])
    single = write_video(tmp_path / "single.mp4", [0.0])
    assert sampled(single, sampling) == sampled(single, Sampling(frames=8)) == ([0.0], [0])


def test_more_chunks_than_frames_takes_each_frame_once(tmp_path):
    path = write_video(tmp_path / "three.mp4", [0.0, 0.1, 0.2])
    assert sampled(path, Sampling(frames=8)) == ([0.0, 0.1, 0.2], [0, 1, 2])
    assert sampled(path, Sampling(fps=100)) == ([0.0, 0.1, 0.2], [0, 1, 2])


def test_rotated_video_comes_out_upright(tmp_path):
    upright = np.zeros((48, 64, 3), np.uint8)
    upright[:24] = (0, 255, 0)  # green sky over a black floor, 64 wide
    # Stored as a portrait phone video: turned clockwise, with a display matrix that
    # turns it back counter-clockwise on playback.
    stored = np.ascontiguousarray(np.rot90(upright, k=-1))
    path = write_video(tmp_path / "portrait.mp4", [0.0, 0.1], images=[stored, stored], rotation=90)
    (frame,) = sample_frames(path, Sampling(fps=1))
    pixels = np.asarray(frame.image)
    assert frame.image.size == (64, 48)
    assert pixels[:20, :, 1].mean() > 200 and pixels[-20:, :, 1].mean() < 30


def test_corrupt_packets_are_skipped(tmp_path):
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(100)]
    intact = write_video(tmp_path / "intact.mp4", constant_rate(4.0, 25), images=noise, gop=10)
    damaged = zero_middle(intact, tmp_path / "damaged.mp4")
    # The frames after the damage still decode from the next keyframe on.
    assert [f.time for f in sample_frames(damaged, Sampling(fps=1))] == [0.0, 1.0, 2.0, 3.0]


def test_unusable_files_are_bad_inputs(tmp_path, ten_fps):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video" * 50)
    with pytest.raises(BadInput, match="cannot open video .*garbage.mp4"):
        list(sample_frames(garbage, Sampling()))
    with pytest.raises(BadInput, match="not found"):
        list(sample_frames(tmp_path / "missing.mp4", Sampling()))
    with pytest.raises(BadInput, match="no decodable video frame"):
        list(sample_frames(zero_frames(ten_fps, tmp_path / "blank.mp4"), Sampling()))
    sound = tmp_path / "sound.wav"
    import soundfile

    soundfile.write(str(sound), np.zeros(1600, np.float32), 16000)
    with pytest.raises(BadInput, match="no video stream"):
        list(sample_frames(sound, Sampling()))


@pytest.mark.parametrize("b_frames", [0, 3])
@pytest.mark.parametrize("sampling", [Sampling(fps=1), Sampling(fps=0.4), Sampling(frames=3)])
def test_seeking_returns_the_frames_decoding_on_would(tmp_path, monkeypatch, b_frames, sampling):
    path = write_video(tmp_path / "gop.mp4", constant_rate(5.0, 20), gop=8, b_frames=b_frames)
    seeks = []
    skip_to = decode._FrameReader.skip_to

    def counted(self, time):
        before = self.read_until
        skip_to(self, time)
        seeks.append(self.read_until is None and before is not None)

    monkeypatch.setattr(decode._FrameReader, "skip_to", counted)
    seeking = list(sample_frames(path, sampling))
    assert any(seeks)  # keyframes every 0.4 s: the reader did jump ahead
    monkeypatch.setattr(decode._FrameReader, "skip_to", lambda self, time: None)
    decoding_on = list(sample_frames(path, sampling))
    assert [f.time for f in seeking] == [f.time for f in decoding_on]
    for a, b in zip(seeking, decoding_on):
        np.testing.assert_array_equal(np.asarray(a.image), np.asarray(b.image))


def test_sampling_identity_separates_the_settings():
    identities = {str(s.identity()) for s in (Sampling(fps=1), Sampling(fps=2), Sampling(frames=4), Sampling(fps=2, frames=4))}
    assert len(identities) == 3  # --frames wins over --fps
    with pytest.raises(ValueError):
        Sampling(frames=0)
