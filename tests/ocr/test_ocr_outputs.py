"""What ocr-subtitles reads and writes around the OCR itself: the pixel limit checked
before decoding, one cue file per video mirrored under --out FOLDER/, and outputs that
are replaced whole or not at all."""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mmtk.cli.app import app
from mmtk.errors import DataError, UsageError
from mmtk.ocr.images import load_image
from mmtk.ocr.outputs import atomic_text, cue_file_names

runner = CliRunner()


def _png_header(path, width, height):
    """A PNG that declares width x height and holds one empty data chunk: decoders that
    trust the header allocate for it, so only the header may be read."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("side", [20000, 12000])  # twice PIL's limit and more; between once and twice
def test_images_over_the_pixel_limit_are_refused_from_the_header(tmp_path, side):
    bomb = _png_header(tmp_path / "bomb.png", side, side)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's DecompressionBombWarning must not leak either
        with pytest.raises(DataError) as info:
            load_image(bomb)
    message = str(info.value)
    assert str(bomb) in message and "pixel limit" in message and "\n" not in message


def test_the_limit_is_pils_so_ocr_and_extraction_agree(tmp_path, monkeypatch):
    import cv2
    from PIL import Image

    image = tmp_path / "small.png"
    cv2.imwrite(str(image), np.full((100, 120, 3), 200, np.uint8))
    assert load_image(image).shape == (100, 120, 3)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 120 - 1)
    with pytest.raises(DataError, match=r"120x100 \(12,000 pixels\), over the 11,999-pixel limit"):
        load_image(image)


def test_cli_refuses_a_bomb_in_one_line_or_skips_it(tmp_path, tesseract):
    bomb = _png_header(tmp_path / "bomb.png", 20000, 20000)
    result = runner.invoke(app, ["ocr-subtitles", str(bomb)])
    assert result.exit_code == 2
    assert str(bomb) in result.stderr and "pixel limit" in result.stderr and result.stderr.count("\n") == 1
    result = runner.invoke(app, ["ocr-subtitles", str(bomb), "--on-error", "skip", "--json", "--out", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 0 and "skipped" in result.stderr and "bomb.png" in result.stderr


def test_cue_files_mirror_the_videos_below_their_common_folder(tmp_path):
    videos = [tmp_path / "videos/a/clip.mp4", tmp_path / "videos/b/clip.mp4", tmp_path / "videos/c.mkv"]
    assert cue_file_names(videos, "srt") == [Path("a/clip.srt"), Path("b/clip.srt"), Path("c.srt")]
    assert cue_file_names([tmp_path / "one/clip.mp4"], "vtt") == [Path("clip.vtt")]


def test_videos_that_would_share_a_cue_file_are_refused(tmp_path):
    with pytest.raises(UsageError) as info:
        cue_file_names([tmp_path / "clip.mp4", tmp_path / "clip.mkv"], "srt")
    assert "clip.mp4" in str(info.value) and "clip.mkv" in str(info.value) and "clip.srt" in str(info.value)


def _blank_video(path, seconds=1.0, fps=10):
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (160, 120))
    for _ in range(int(seconds * fps)):
        writer.write(np.full((120, 160, 3), 40, np.uint8))
    writer.release()
    return path


def test_cli_writes_one_cue_file_per_video_under_mirrored_folders(tmp_path, tesseract):
    first = _blank_video(tmp_path / "videos/a/clip.avi")
    second = _blank_video(tmp_path / "videos/b/clip.avi")
    out = tmp_path / "subs"
    result = runner.invoke(app, ["ocr-subtitles", str(first), str(second), "--out", f"{out}/", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["a", "a/clip.srt", "b", "b/clip.srt"]
    clash = _blank_video(tmp_path / "videos/a/clip.mp4")
    result = runner.invoke(app, ["ocr-subtitles", str(first), str(clash), "--out", f"{out}/"])
    assert result.exit_code == 2 and "clip.srt" in result.stderr and result.stderr.count("\n") == 1


def test_a_failing_input_leaves_an_existing_output_file_as_it_was(tmp_path, tesseract):
    good = _blank_video(tmp_path / "good.avi")
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"not a video")
    out = tmp_path / "cues.jsonl"
    out.write_text('{"kept": true}\n')
    result = runner.invoke(app, ["ocr-subtitles", str(good), str(broken), "--format", "jsonl", "--out", str(out)])
    assert result.exit_code == 2 and "broken.avi" in result.stderr
    assert out.read_text() == '{"kept": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.avi", "cues.jsonl", "good.avi"]  # no temp file left


def test_atomic_text_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_text(target) as stream:
            stream.write("half")
            raise RuntimeError("input failed")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["out.txt"]
    os.chmod(target, 0o640)
    with atomic_text(target) as stream:
        stream.write("new")
    assert target.read_text() == "new" and target.stat().st_mode & 0o777 == 0o640  # permissions kept
    previous = os.umask(0o027)
    try:
        with atomic_text(tmp_path / "fresh.txt") as stream:
            stream.write("x")
    finally:
        os.umask(previous)
    assert (tmp_path / "fresh.txt").stat().st_mode & 0o777 == 0o640  # a new file follows the umask
    with pytest.raises(FileNotFoundError):
        with atomic_text(tmp_path / "missing" / "out.txt"):
            pass
