"""mfcc through extract_features and training: stored as sequences (frames x 40),
bad clips reported by file:line or skipped, the audio track of a video column read,
sequences pooled by masked mean for vector models without ``:seq``, and ``concat``
trained on them through the Python API."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from audio_media import write_mp4
from generated_media import tone, write_wav
from mmtk.audio import MfccExtractor, load_audio
from mmtk.backbones import resolve_backbone
from mmtk.data import content_key, read_dataset
from mmtk.errors import DataError
from mmtk.extract import extract_features
from mmtk.features import load_features
from mmtk.store import FeatureStore


def write_csv(path, rows, fields=("id", "audio", "label")):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fields))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def audio_csv(tmp_path, clips):
    names = ["tone16k", "tone8k", "stereo44k", "flac", "ogg", "short", "noise"]
    return write_csv(tmp_path / "data.csv", [{"id": n, "audio": str(clips[n]), "label": i % 2} for i, n in enumerate(names)])


def test_mfcc_is_stored_as_sequences_of_frames(audio_csv, tmp_path):
    store = FeatureStore(tmp_path / "store")
    dataset = read_dataset(audio_csv)
    # Two worker processes, several batches each (mfcc's cpu_workers="processes").
    report = extract_features(dataset, "mfcc", store=store, num_workers=2, batch_size=2)
    assert (report.computed, report.modality, report.column) == (7, "audio", "audio")
    (feature_set,) = store.feature_sets()
    assert (feature_set["kind"], feature_set["dim"], feature_set["items"]) == ("sequence", 40, 7)

    paths = dataset.values("audio")
    keys = [content_key(path, "audio") for path in paths]
    steps, lengths = store.gather_sequences(report.fingerprint, keys)
    extractor = MfccExtractor(**resolve_backbone("mfcc").settings)
    for row, path in enumerate(paths):
        expected = extractor(load_audio(path, 16000))
        assert lengths[row] == expected.shape[0] == 1 + load_audio(path, 16000).size // 512
        np.testing.assert_allclose(steps[row, : lengths[row]], expected, atol=1e-5)

    # A vector model gets the masked mean over frames, with or without ':seq'.
    for ref in ("mfcc", "mfcc:seq"):
        pooled = load_features(dataset, [ref], store)[ref]
        assert pooled.shape == (7, 40)
        for row in range(7):
            np.testing.assert_allclose(pooled[row], steps[row, : lengths[row]].mean(axis=0), atol=1e-5)

    again = extract_features(dataset, "mfcc", store=store)
    assert (again.cached, again.computed) == (7, 0)

    # One worker runs in the calling thread and stores the same features.
    single = FeatureStore(tmp_path / "single")
    assert extract_features(dataset, "mfcc", store=single, num_workers=1, batch_size=3).computed == 7
    single_steps, single_lengths = single.gather_sequences(report.fingerprint, keys)
    np.testing.assert_array_equal(single_lengths, lengths)
    np.testing.assert_allclose(single_steps, steps, atol=1e-6)


def test_bad_clips_name_file_and_line_or_are_skipped(tmp_path, clips):
    rows = [{"id": n, "audio": str(clips[n]), "label": 0} for n in ("tone16k", "garbage", "silent", "short")]
    path = write_csv(tmp_path / "bad.csv", rows)
    dataset = read_dataset(path)
    # Batches are handed on in order, so the first bad item stops the run, after the
    # good clip before it was stored, whether one worker runs them or two.
    for workers in (1, 2):
        store = FeatureStore(tmp_path / f"store{workers}")
        with pytest.raises(DataError, match=r"bad\.csv:3 \(item 'garbage'\).*cannot decode") as caught:
            extract_features(dataset, "mfcc", store=store, num_workers=workers, batch_size=1)
        assert "--on-error skip" in caught.value.hint
        assert store.missing(resolve_backbone("mfcc").fingerprint, [content_key(str(clips["tone16k"]), "audio")]) == []
    report = extract_features(dataset, "mfcc", store=store, on_error="skip", num_workers=2, batch_size=1)
    assert sorted((item.line, item.item) for item in report.skipped) == [(3, "garbage"), (4, "silent")]
    reasons = {item.item: item.reason for item in report.skipped}
    assert "is silent" in reasons["silent"] and "cannot decode" in reasons["garbage"]
    assert report.cached + report.computed == 2


def test_audio_track_of_a_video_column(tmp_path):
    low, high = write_mp4(tmp_path / "low.mp4", tone(1.0, 16000, 200)), write_mp4(tmp_path / "high.mp4", tone(1.0, 16000, 3000))
    path = write_csv(tmp_path / "videos.csv", [{"id": "low", "video": str(low)}, {"id": "high", "video": str(high)}], ("id", "video"))
    store = FeatureStore(tmp_path / "store")
    dataset = read_dataset(path)
    report = extract_features(dataset, "mfcc", store=store)
    assert (report.column, report.modality, report.computed) == ("video", "audio", 2)
    pooled = load_features(dataset, ["mfcc"], store)["mfcc"]
    assert pooled.shape == (2, 40) and not np.allclose(pooled[0], pooled[1], atol=1.0)
    # Naming the video column explicitly reads the same audio track (same store entries).
    np.testing.assert_array_equal(load_features(dataset, ["mfcc@video"], store)["mfcc@video"], pooled)


def test_concat_trains_on_mfcc(tmp_path):
    from mmtk.train import train

    rows = []
    for index in range(40):
        label = index % 2
        hz = (250 if label == 0 else 2500) * (1 + 0.03 * (index // 2 % 5))
        clip = write_wav(tmp_path / f"clip{index}.wav", tone(0.2 + 0.01 * (index % 7), 16000, hz, seed=index), 16000)
        rows.append({"id": f"c{index}", "audio": str(clip), "label": "low" if label == 0 else "high"})
    dataset = read_dataset(write_csv(tmp_path / "tones.csv", rows))
    store = FeatureStore(tmp_path / "store")
    extract_features(dataset, "mfcc", store=store)
    report = train(
        dataset, features=["mfcc"], model="concat", tasks=["label"], out=tmp_path / "run", store=store,
        epochs=40, hidden=32, seed=0, device="cpu",
    )
    assert report.val_metrics["metrics"]["accuracy"] >= 0.9
    assert (tmp_path / "run" / "model.safetensors").exists()


@pytest.mark.realdata
def test_real_videos_audio_tracks_through_extraction(tmp_path):
    import av

    from audio_media import SHARED_DATA

    videos = sorted((SHARED_DATA / "video").glob("*.mp4"))
    if not videos:
        pytest.skip("no videos in ../shared/data/video")
    path = write_csv(tmp_path / "videos.csv", [{"id": v.stem, "video": str(v)} for v in videos], ("id", "video"))
    store = FeatureStore(tmp_path / "store")
    dataset = read_dataset(path)
    report = extract_features(dataset, "mfcc", store=store)
    assert report.computed == len(videos) and not report.skipped
    keys = [content_key(str(v), "audio") for v in videos]
    _, lengths = store.gather_sequences(report.fingerprint, keys)
    for video, frames in zip(videos, lengths):
        with av.open(str(video)) as container:
            seconds = float(container.streams.audio[0].duration * container.streams.audio[0].time_base)
        assert abs(frames - seconds / 0.032) <= 3  # one frame per 32 ms hop of the track
