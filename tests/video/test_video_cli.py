"""Video columns from the shell: extract-features --column video --fps 2 (a corrupt
video skipped and listed), train/evaluate/predict on pixels@video with the same --fps,
a different --fps pointing at the command that extracts it, and the audio track
(mfcc) beside efficientnet-lite0 frames on a dataset that has only a video column."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mmtk.cli.app import app
from generated_media import constant_rate, tone, write_video

runner = CliRunner()


def mmtk(*args):
    return runner.invoke(app, [str(a) for a in args])


def ok(result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


def ok_json(result) -> dict:
    return json.loads(ok(result))


def video_dataset(folder: Path, count: int, *, audio: bool = False, broken: bool = False) -> Path:
    """``count`` clips of 1-1.2 s at 10 fps, bright at the top for label 1 and at the
    bottom for label 0 (with a high or low tone), plus optionally a file that is no
    video at all."""
    rows = []
    for i in range(count):
        label = i % 2
        times = constant_rate(1.0 + 0.1 * (i % 3), 10)
        images = []
        for k in range(len(times)):
            image = np.full((48, 64, 3), 40 + 3 * (i % 5), np.uint8)
            (image[:24] if label else image[24:])[...] = 200 + k
            images.append(image)
        sound = tone(1.2, 16000, 880.0 if label else 300.0, seed=i) if audio else None
        write_video(folder / f"clip{i}.mp4", times, images=images, audio=sound)
        rows.append({"id": f"c{i}", "video": f"clip{i}.mp4", "label": label})
    if broken:
        (folder / "broken.mp4").write_bytes(b"not a video" * 64)
        rows.append({"id": "broken", "video": "broken.mp4", "label": 0})
    path = folder / "videos.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "video", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_pixels_over_video_frames_from_extraction_to_prediction(tmp_path):
    data = video_dataset(tmp_path, 12, broken=True)
    report = ok_json(mmtk("extract-features", data, "--backbone", "pixels", "--column", "video", "--fps", "2", "--on-error", "skip", "--json"))
    (backbone,) = report["backbones"]
    assert (backbone["computed"], backbone["skipped"]) == (12, 1)
    (skipped,) = report["skipped"]
    assert "videos.csv:14" in skipped and "broken" in skipped and "cannot open video" in skipped
    listing = ok_json(mmtk("store", "ls", "--json"))["feature_sets"]
    assert sorted((s["backbone"], s["variant"], s["modality"], s["kind"], s["dim"], s["items"]) for s in listing) == [
        ("frame-times:fps=2", "", "video", "sequence", 1, 12), ("pixels", "frames fps=2", "video", "sequence", 256, 12),
    ]

    # Training reads the features stored at --fps 2 and records the option in the run.
    run = tmp_path / "run"
    clean = tmp_path / "clean.csv"
    clean.write_text("".join(line for line in data.read_text().splitlines(keepends=True) if "broken" not in line))
    ok(mmtk("train", clean, "--features", "pixels@video", "--fps", "2", "--model", "concat", "--task", "label:binary",
            "--out", run, "--epochs", "40", "--lr", "0.01", "--json"))
    (feature,) = json.loads((run / "config.json").read_text())["features"]
    assert (feature["ref"], feature["modality"], feature["options"]) == ("pixels@video", "video", {"fps": 2.0})

    metrics = ok_json(mmtk("evaluate", run, clean, "--json"))
    assert metrics["n"] == 12 and metrics["metrics"]["accuracy"] >= 0.9
    predictions = ok(mmtk("predict", run, clean))
    assert [json.loads(line)["id"] for line in predictions.splitlines()] == [f"c{i}" for i in range(12)]

    # Another --fps is another feature: training on it names the command that extracts it.
    result = mmtk("train", clean, "--features", "pixels@video", "--fps", "3", "--model", "concat",
                  "--task", "label:binary", "--out", tmp_path / "run3")
    assert result.exit_code == 2
    assert "have no pixels (video) features" in result.output
    assert "--backbone pixels --column video --fps 3.0" in result.output


@pytest.mark.slow  # the real efficientnet-lite0 weights, two extractions and a training run
def test_audio_track_and_frames_of_a_video_only_dataset(tmp_path):
    data = video_dataset(tmp_path, 10, audio=True)
    # mfcc reads the video's audio track: no --column needed on a video-only dataset.
    ok(mmtk("extract-features", data, "--backbone", "mfcc", "--json"))
    ok(mmtk("extract-features", data, "--backbone", "efficientnet-lite0", "--column", "video", "--frames", "3", "--json"))
    run = tmp_path / "run"
    ok(mmtk("train", data, "--features", "mfcc,efficientnet-lite0@video", "--frames", "3", "--model", "gmu",
            "--task", "label:binary", "--out", run, "--epochs", "30", "--lr", "0.01", "--json"))
    features = json.loads((run / "config.json").read_text())["features"]
    assert [(f["ref"], f["modality"]) for f in features] == [("mfcc", "audio"), ("efficientnet-lite0@video", "video")]
    assert ok_json(mmtk("evaluate", run, data, "--json"))["metrics"]["accuracy"] >= 0.9
    records = [json.loads(line) for line in ok(mmtk("predict", run, data, "--explain")).splitlines()]
    assert len(records) == 10 and set(records[0]["explain"]) == {"mfcc", "efficientnet-lite0@video"}
