"""Image backbones over a video column: the frames config and its fingerprint, the
encoder's per-frame features and times, extraction with bad videos, the frame times read
back from the store, and the commit order that keeps them crash-safe."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mmtk.backbones import FeatureOptions, resolve_backbone
from mmtk.backbones.base import Encoded
from mmtk.backbones.frames import frames_config, sampling_of, timestamps_fingerprint
from mmtk.data import read_dataset
from mmtk.errors import DataError, StoreError, UsageError
from mmtk.extract import extract_features
from mmtk.features import gather_timestamps, load_features, parse_feature_refs, required_columns
from mmtk.store import FeatureStore
from generated_media import constant_rate, level, write_video


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def videos(tmp_path) -> Path:
    """A video-only dataset: 2.0 s and 0.5 s clips at 10 fps, then a corrupt file."""
    long = write_video(tmp_path / "long.mp4", constant_rate(2.0, 10))
    short = write_video(tmp_path / "short.mp4", constant_rate(0.5, 10))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
    return write_csv(
        tmp_path / "videos.csv",
        [{"id": "long", "video": long.name}, {"id": "short", "video": short.name}, {"id": "broken", "video": broken.name}],
    )


def test_frames_config_fingerprint_follows_image_backbone_and_sampling():
    def config(spec="pixels:4", **options):
        return resolve_backbone(spec, "video", options=FeatureOptions(**options))

    base = config()
    assert (base.modality, base.kind, base.dim, base.spec) == ("video", "sequence", 16, "pixels:4")
    assert base.fingerprint != resolve_backbone("pixels:4").fingerprint
    prints = {c.fingerprint for c in (base, config(fps=2), config(frames=4), config("pixels:8"), config(max_length=16))}
    assert len(prints) == 4  # --max-length is no part of video features
    # The frame times depend on the sampling only: every image backbone shares them.
    assert set(config("pixels:8", fps=2).companions) == set(config(fps=2).companions) == {
        timestamps_fingerprint(sampling_of(FeatureOptions(fps=2)))
    }
    assert set(config(fps=2).companions) != set(base.companions)


def test_image_backbones_storing_several_vectors_are_refused():
    grid = replace(resolve_backbone("pixels"), kind="sequence")
    with pytest.raises(UsageError, match="one vector per frame"):
        frames_config(grid, FeatureOptions())


def test_encoder_returns_frame_features_and_times(tmp_path):
    long = write_video(tmp_path / "long.mp4", constant_rate(2.0, 10))
    short = write_video(tmp_path / "short.mp4", constant_rate(0.5, 10))
    config = resolve_backbone("pixels:4", "video", options=FeatureOptions(fps=2))
    encoder = config.build("cpu")
    encoder.frame_batch = 3  # several image batches per video batch, split across videos
    out = encoder.encode(encoder.collate([encoder.load(str(long)), encoder.load(str(short))]))
    assert isinstance(out, Encoded)
    long_rows, short_rows = out.features
    assert long_rows.shape == (4, 16) and short_rows.shape == (1, 16)
    # pixels of frames 0, 5, 10, 15 (flat grey, so every pixel is that frame's level)
    np.testing.assert_allclose(long_rows.mean(axis=1), [level(i) / 255 for i in (0, 5, 10, 15)], atol=2 / 255)
    (times,) = out.companions.values()
    np.testing.assert_allclose(times[0][:, 0], [0.0, 0.5, 1.0, 1.5], atol=1e-6)
    np.testing.assert_allclose(times[1][:, 0], [0.0], atol=1e-6)


def test_extraction_stores_frames_and_times_and_skips_bad_videos(videos):
    store = FeatureStore()
    dataset = read_dataset(videos, require=["video"])
    options = FeatureOptions(fps=2)
    report = extract_features(dataset, "pixels:4", store=store, column="video", options=options, on_error="skip")
    assert (report.modality, report.computed) == ("video", 2)
    ((bad),) = report.skipped
    assert (bad.item, bad.line) == ("broken", 4) and "cannot open video" in bad.reason

    good = replace(dataset, records=dataset.records[:2])
    with pytest.raises(StoreError, match=r"2 of 2 'video' videos .* no frame times") as error:
        gather_timestamps(good, "pixels:4@video", store)  # 1 fps: never extracted
    assert "--column video" in error.value.hint
    times = gather_timestamps(good, "pixels:4@video", store, options=options)
    np.testing.assert_allclose(times[0], [0.0, 0.5, 1.0, 1.5], atol=1e-6)
    np.testing.assert_allclose(times[1], [0.0], atol=1e-6)
    assert all(t.dtype == np.float32 for t in times)
    with pytest.raises(UsageError, match="no frame times"):
        gather_timestamps(good, "mfcc", store)  # the audio track: no frames

    # Frame times removed on their own come back on the next extraction.
    config = resolve_backbone("pixels:4", "video", options=options)
    (times_fingerprint,) = config.companions
    store.remove(times_fingerprint)
    again = extract_features(dataset, "pixels:4", store=store, column="video", options=options, on_error="skip")
    assert (again.cached, again.computed) == (0, 2)
    np.testing.assert_allclose(gather_timestamps(good, "pixels:4@video", store, options=options)[0], times[0])

    # Models get each video's frames pooled by their mean.
    (ref,) = parse_feature_refs(["pixels:4@video"], options)
    pooled = load_features(good, [ref], store)["pixels:4@video"]
    expected = [np.mean([level(i) for i in (0, 5, 10, 15)]) / 255, level(0) / 255]
    np.testing.assert_allclose(pooled.mean(axis=1), expected, atol=2 / 255)
    with pytest.raises(StoreError, match="1 of 3"):
        load_features(dataset, [ref], store)  # the broken video has no features


def test_a_bad_video_fails_extraction_naming_it(videos):
    dataset = read_dataset(videos, require=["video"])
    with pytest.raises(DataError, match=r"videos.csv:4.*broken.*cannot open video") as error:
        extract_features(dataset, "pixels:4", store=FeatureStore(), column="video")
    assert "--on-error skip" in error.value.hint


def test_frame_times_are_committed_before_the_features(videos, monkeypatch):
    """A kill between the two puts must leave times without features (recomputed by
    the next run), never features without times (which no run would add)."""
    order = []
    put = FeatureStore.put

    def recording(self, fingerprint, keys, arrays):
        order.append(fingerprint)
        return put(self, fingerprint, keys, arrays)

    monkeypatch.setattr(FeatureStore, "put", recording)
    dataset = read_dataset(videos, require=["video"])
    report = extract_features(dataset, "pixels:4", store=FeatureStore(), column="video", on_error="skip")
    config = resolve_backbone("pixels:4", "video")
    (times,) = config.companions
    assert report.computed == 2 and order and order[::2] == [times] * (len(order) // 2)
    assert order[1::2] == [config.fingerprint] * (len(order) // 2)


def test_audio_features_require_the_video_column_of_a_video_only_dataset(videos, tmp_path):
    needed = required_columns(["mfcc", "pixels@video"])
    assert needed == ["audio", "video"]
    dataset = read_dataset(videos, require=needed)  # the audio track of the video column
    assert len(dataset.records) == 3
    gap = write_csv(tmp_path / "gap.csv", [{"id": "a", "video": "long.mp4"}, {"id": "b", "video": ""}])
    with pytest.raises(DataError, match=r"gap.csv:3.*missing video|gap.csv:3.*empty video"):
        read_dataset(gap, require=["audio"])
