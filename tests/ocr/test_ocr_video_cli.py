"""Videos with burned-in subtitles through the library and the CLI, images and the
dataset form through the CLI, and per-item errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from mmtk.cli.app import app
from mmtk.errors import DataError
from mmtk.ocr.scoring import score_cues
from mmtk.ocr.video import VideoOcrSettings, ocr_video
from mmtk.ocr.writers import parse_srt

runner = CliRunner()

SRT = """1
00:00:00,500 --> 00:00:02,000
Where did you put the keys?

2
00:00:02,600 --> 00:00:03,400
Run!

3
00:00:04,000 --> 00:00:05,500
I left them on the table.
"""


@pytest.fixture
def subtitled(tmp_path, ffmpeg_subtitles, tesseract):
    return ffmpeg_subtitles(tmp_path / "clip.mp4", SRT, seconds=6)


def test_burned_in_subtitles_become_timed_cues(subtitled):
    result = ocr_video(subtitled, VideoOcrSettings(fps=4), workers=1)
    score = score_cues(parse_srt(SRT), result.cues)
    assert score.recall == 1.0 and score.spurious == 0  # the sub-second "Run!" included
    assert score.mean_cer <= 0.05
    assert score.boundary_error <= 0.2
    # Change detection: far fewer OCR calls than sampled frames (letters this small
    # are read up to 1 + retries times per caption for the vote).
    assert result.frames_sampled >= 24 and result.ocr_calls <= 3 * (1 + VideoOcrSettings().retries)


def test_default_two_samples_a_second_place_cue_edges_within_a_frame_or_two(subtitled):
    # Sampled every 0.5 s, edges would be up to 0.25 s off without bisecting the frames
    # decoded between samples; with it they are within a couple of 25 fps frames.
    result = ocr_video(subtitled, workers=1)
    assert result.frames_sampled <= 14  # 25 fps frames: samples 0.48 s apart
    reference = parse_srt(SRT)
    score = score_cues(reference, result.cues)
    assert score.recall == 1.0 and score.spurious == 0 and len(result.cues) == len(reference)
    for cue, truth in zip(result.cues, reference):
        assert abs(cue.start - truth.start) <= 0.1 and abs(cue.end - truth.end) <= 0.1, (cue, truth)


def test_sampling_hands_over_the_frames_decoded_between_samples(subtitled):
    from mmtk.ocr.frames import sample_frames

    frames = list(sample_frames(subtitled, 2.0))
    # Never more than 1/fps apart, so text shown that long is always sampled; here the
    # latest 25 fps frame within 0.5 s of the previous sample.
    gaps = [b.time - a.time for a, b in zip(frames, frames[1:])]
    assert frames[0].time == 0.0 and all(g <= 0.501 for g in gaps) and min(gaps[:-1]) > 0.4
    assert frames[-1].time == 5.96  # the video's last frame closes the last step
    for before, after in zip(frames, frames[1:]):
        times = [f.time for f in after.between]
        assert times and all(before.time < t < after.time for t in times) and times == sorted(times)
        assert after.between[0].image().shape == after.image.shape


def test_cli_writes_srt_that_parses_back(subtitled, tmp_path):
    out = tmp_path / "clip.srt"
    result = runner.invoke(app, ["ocr-subtitles", str(subtitled), "--fps", "4", "--out", str(out), "--workers", "1"])
    assert result.exit_code == 0, result.output
    cues = parse_srt(out.read_text())
    assert [c.text for c in cues] == ["Where did you put the keys?", "Run!", "I left them on the table."]


def test_cli_json_summary_and_vtt(subtitled, tmp_path):
    out = tmp_path / "clip.vtt"
    result = runner.invoke(app, ["ocr-subtitles", str(subtitled), "--format", "vtt", "--out", str(out), "--json"])  # 2 fps: 12 frames
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["videos"][0]["frames_sampled"] in (13, 14) and summary["videos"][0]["ocr_calls"] >= 2
    assert out.read_text().startswith("WEBVTT\n\n")


def _opencv_video(path, frames, fps=10):
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (frames[0].shape[1], frames[0].shape[0]))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def test_video_written_by_opencv_without_ffmpeg(tmp_path, tesseract, busy_background, draw_caption):
    background = busy_background()
    frames = [background.copy() for _ in range(30)]
    for frame in frames[10:20]:
        draw_caption(frame, "Hold on tight", 320, 330)
    video = _opencv_video(tmp_path / "clip.avi", frames)
    result = ocr_video(video, VideoOcrSettings(fps=5), workers=1)
    assert [c.text for c in result.cues] == ["Hold on tight"]
    assert abs(result.cues[0].start - 1.0) <= 0.15 and abs(result.cues[0].end - 2.0) <= 0.15


def test_undecodable_and_missing_videos_are_data_errors(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    for path in (broken, tmp_path / "missing.mp4"):
        with pytest.raises(DataError) as info:
            ocr_video(path)
        assert str(path) in str(info.value)


def test_cli_skips_bad_items_and_names_them(tmp_path, tesseract, busy_background, draw_caption):
    import cv2

    good = tmp_path / "meme.png"
    meme = busy_background(400, 400)
    draw_caption(meme, "SUCH WOW", 200, 60, scale=1.5)
    cv2.imwrite(str(good), meme)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    result = runner.invoke(app, ["ocr-subtitles", str(good), str(bad)])
    assert result.exit_code == 2
    assert "bad.jpg" in result.stderr and "cannot decode image" in result.stderr
    result = runner.invoke(app, ["ocr-subtitles", str(tmp_path), "--on-error", "skip"])
    assert result.exit_code == 0
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["image"].endswith("meme.png") for r in records] == [True]
    assert "SUCH WOW" in records[0]["text"]
    assert "skipped" in result.stderr and "bad.jpg" in result.stderr


def test_dataset_form_fills_text_and_keeps_the_original(tmp_path, tesseract, busy_background, draw_caption):
    import cv2

    for name, caption in (("a.png", "ONE DOES NOT"), ("b.png", "BRACE YOURSELVES")):
        image = busy_background(400, 400, seed=len(name))
        draw_caption(image, caption, 200, 370, scale=1.3)
        cv2.imwrite(str(tmp_path / name), image)
    data = tmp_path / "memes.csv"
    data.write_text("id,img,text,label\n1,a.png,one dos not,0\n2,b.png,,1\n3,missing.png,x,1\n")
    out = tmp_path / "out.csv"
    args = ["ocr-subtitles", str(data), "--into", "text", "--out", str(out)]
    failed = runner.invoke(app, args)
    assert failed.exit_code == 2 and "memes.csv:4" in failed.stderr
    result = runner.invoke(app, args + ["--on-error", "skip", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["items"] == 2
    rows = list(csv.DictReader(out.open()))
    assert [r["text"] for r in rows] == ["ONE DOES NOT", "BRACE YOURSELVES"]
    assert [r["text_original"] for r in rows] == ["one dos not", ""]
    assert [r["img"] for r in rows] == ["a.png", "b.png"]  # still resolves next to the new file
    assert [r["label"] for r in rows] == ["0", "1"]


def test_dataset_video_column_gets_a_new_text_column(subtitled, tmp_path):
    data = tmp_path / "videos.jsonl"
    data.write_text(json.dumps({"id": "v1", "video": subtitled.name, "label": 1}) + "\n")
    out = tmp_path / "with_text.jsonl"
    result = runner.invoke(app, ["ocr-subtitles", str(data), "--fps", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    row = json.loads(out.read_text())
    assert row["ocr_text"].splitlines() == ["Where did you put the keys?", "Run!", "I left them on the table."]


def test_cli_usage_errors_are_one_line(tmp_path):
    for args, expected in (
        (["x.mp4", "--region", "bottom"], "--region 'bottom'"),
        (["x.mp4", "--fps", "0"], "--fps"),
        (["x.mp4", "--json"], "--out FILE"),
        (["a.mp4", "b.mp4", "--format", "srt", "--out", str(tmp_path / "one.srt")], "cannot share one srt file"),
    ):
        result = runner.invoke(app, ["ocr-subtitles", *args])
        assert result.exit_code == 2, args
        assert expected in result.stderr and result.stderr.count("\n") == 1
