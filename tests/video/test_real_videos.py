"""The two real clips in ../shared/data/video through frame sampling and audio track
extraction: one frame per second of video at 1 fps, increasing times, and mfcc frames
for the whole soundtrack."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from mmtk.backbones import FeatureOptions
from mmtk.data import read_dataset
from mmtk.extract import extract_features
from mmtk.features import gather_timestamps, load_features, parse_feature_refs
from mmtk.store import FeatureStore

pytestmark = pytest.mark.realdata


@pytest.fixture
def clips(shared_data, tmp_path):
    videos = sorted((shared_data / "video").glob("*.mp4"))
    if not videos:
        pytest.skip(f"no videos in {shared_data / 'video'}")
    path = tmp_path / "clips.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "video"])
        writer.writerows([video.stem, str(video)] for video in videos)
    return path, videos


def video_seconds(path) -> float:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return float(stream.duration * stream.time_base)


def test_real_clips_through_frames_and_audio_track(clips):
    path, videos = clips
    store = FeatureStore()
    dataset = read_dataset(path, require=["audio", "video"])
    frames = extract_features(dataset, "pixels:8", store=store, column="video")
    sound = extract_features(dataset, "mfcc", store=store)  # the video column's audio track
    assert (frames.computed, sound.computed, sound.column, sound.modality) == (2, 2, "video", "audio")

    times = gather_timestamps(dataset, "pixels:8@video", store)
    for video, stamps in zip(videos, times):
        # 18.04 s and 14.0 s: one frame in each started second, from 0 s.
        assert len(stamps) == math.ceil(video_seconds(video)), video.name
        assert stamps[0] == 0.0 and np.all(np.diff(stamps) > 0)
        # The first frame at or after each whole second, a frame period late at most.
        assert np.all((stamps - np.arange(len(stamps)) >= -1e-6) & (stamps - np.arange(len(stamps)) < 0.06))

    (ref,) = parse_feature_refs(["pixels:8@video"], FeatureOptions())
    pooled = load_features(dataset, [ref, "mfcc"], store)
    assert pooled["pixels:8@video"].shape == (2, 64) and pooled["mfcc"].shape[0] == 2
    assert np.all(np.isfinite(pooled["mfcc"])) and not np.allclose(pooled["mfcc"][0], pooled["mfcc"][1])

    # --frames 4 on the same clips: 4 frames each, a quarter of the video apart.
    extract_features(dataset, "pixels:8", store=store, column="video", options=FeatureOptions(frames=4))
    for video, stamps in zip(videos, gather_timestamps(dataset, "pixels:8@video", store, options=FeatureOptions(frames=4))):
        quarter = video_seconds(video) / 4
        assert len(stamps) == 4 and np.all(np.abs(stamps - quarter * np.arange(4)) < 0.1), (video.name, stamps)
