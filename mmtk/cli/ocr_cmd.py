"""mmtk ocr-subtitles: burned-in subtitles of videos, captions of images, or a dataset's
video/image column into a text column."""

from __future__ import annotations

from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from mmtk.cli import output
from mmtk.cli.errors import handle_errors
from mmtk.cli.options import (
    AllowOutsidePaths, IdColumn, ImageColumn, Json, OnError, OnErrorOpt, Quiet, TextColumn, column_overrides,
)
from mmtk.errors import UsageError

EXAMPLE = """Examples:

  mmtk ocr-subtitles clip.mp4 --region lower-third --out clip.srt

  mmtk ocr-subtitles videos/*.mp4 --format jsonl --out cues.jsonl --on-error skip

  mmtk ocr-subtitles memes/ --engine rapidocr --out memes_text.jsonl

  mmtk ocr-subtitles memes.jsonl --into text --out memes_ocr.jsonl
"""

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv"}
DATA_SUFFIXES = {".csv", ".tsv", ".jsonl", ".ndjson", ".json"}


class CueFormat(str, Enum):
    srt = "srt"
    vtt = "vtt"
    jsonl = "jsonl"


@handle_errors
def ocr_subtitles_command(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Videos, images, folders of images/videos, or one dataset (.csv/.jsonl) with a video or image column.",
            show_default=False,
        ),
    ],
    fps: Annotated[float, typer.Option("--fps", help="Frames sampled per second; 2 sees every subtitle shown for 0.5 s or more, and the frames between samples place cue edges within ~0.1 s.")] = 2.0,
    region: Annotated[str, typer.Option("--region", help="Where subtitles are: lower-half, lower-third, full, or X,Y,W,H in pixels.")] = "lower-half",
    lang: Annotated[str, typer.Option("--lang", help="Tesseract language(s), e.g. eng or eng+deu.")] = "eng",
    engine: Annotated[str, typer.Option("--engine", help="OCR engine: tesseract, or rapidocr (pip install 'mmtk[ocr]') for text over busy photos.")] = "tesseract",
    fmt: Annotated[
        Optional[CueFormat], typer.Option("--format", help="Cue format for videos (default srt); images and datasets are written as JSONL/CSV.", show_default=False)
    ] = None,
    out: Annotated[
        str, typer.Option("--out", "-o", help="Output file, - for stdout, or a folder ending in / (one cue file per video, mirroring the paths below the folder that holds them all).")
    ] = "-",
    min_confidence: Annotated[float, typer.Option("--min-confidence", help="Readings below this OCR confidence (0-100) end a cue.")] = 60.0,
    column: Annotated[Optional[str], typer.Option("--column", help="Dataset form: media column to read (default: video, else image).")] = None,
    into: Annotated[str, typer.Option("--into", help="Dataset form: column for the text; an existing one (e.g. text) keeps its old values in <into>_original.")] = "ocr_text",
    workers: Annotated[Optional[int], typer.Option("--workers", help="Parallel OCR threads (default: CPU count, at most 4).")] = None,
    on_error: OnErrorOpt = OnError.fail,
    id_column: IdColumn = None,
    image_column: ImageColumn = None,
    text_column: TextColumn = None,
    allow_outside_paths: AllowOutsidePaths = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Read text burned into videos (subtitles, as timed cues) and images (meme captions).

    Frames are sampled at --fps, cropped to --region and cleaned for OCR; the OCR engine only runs when the caption's pixels change, and consecutive readings of one subtitle become one cue. Given a dataset, writes a copy with the text in a new column.
    """
    output.set_quiet(quiet)
    if fps <= 0 or fps > 60:
        raise UsageError(f"--fps {fps:g} is out of range", "use a rate between 0.1 and 60 frames per second")
    if json_out and out == "-":
        raise UsageError("--json prints a summary on stdout, so the results need a file", "add --out FILE")
    from mmtk.ocr.regions import parse_region

    parse_region(region)  # a bad --region fails before any decoding
    if len(inputs) == 1 and Path(inputs[0]).suffix.lower() in DATA_SUFFIXES:
        _dataset_form(inputs[0], fps, region, lang, engine, min_confidence, column, into, workers, on_error, out, json_out,
                      column_overrides(id_column, image_column, text_column, allow_outside_paths))
        return
    from mmtk.ocr.images import is_image

    media = list_media(inputs)
    videos = [p for p in media if p.suffix.lower() in VIDEO_SUFFIXES]
    images = [p for p in media if p not in set(videos)]
    unknown = [p for p in images if p.exists() and not is_image(p)]
    if unknown:
        raise UsageError(f"{unknown[0]}: not a video, image or dataset file", "pass videos (.mp4, .mkv, ...), images (.jpg, .png, ...) or one .csv/.jsonl dataset")
    if not media:
        raise UsageError(f"no videos or images found in {', '.join(inputs)}", "pass video or image files, or folders holding them")
    if images and fmt not in (None, CueFormat.jsonl):
        raise UsageError(f"--format {fmt.value} is for videos; image text is written as JSONL", "drop --format or use --format jsonl")
    if images and videos and fmt is None:
        raise UsageError("videos and images together are written as one JSONL stream", "add --format jsonl, or run them separately")
    from mmtk.ocr.pool import OcrPool

    cue_format = (fmt or CueFormat.srt).value
    folder = _output_folder(out, len(videos), cue_format, images)
    summary: dict = {"videos": [], "images": 0, "skipped": []}
    with _output_stream(out, folder) as stream, OcrPool(engine, lang, workers) as pool:
        if videos:
            _videos(videos, pool, fps, region, min_confidence, cue_format, stream, folder, on_error, summary)
        if images:
            _images(images, pool, stream, on_error, summary)
    for line in summary["skipped"]:
        output.warn(f"skipped {line}")
    if json_out:
        output.print_json(summary)


def list_media(inputs: list[str]) -> list[Path]:
    """Files named directly, and images and videos found in named folders; a file named
    twice (or also found in a named folder) is read once."""
    import os

    from mmtk.ocr.images import list_images

    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found.extend(sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES))
            found.extend(list_images([item]))
        else:
            found.append(item)
    return list({os.path.abspath(p): p for p in found}.values())


def _video_settings(fps: float, region: str, min_confidence: float):
    from mmtk.ocr.cues import CueSettings
    from mmtk.ocr.video import VideoOcrSettings

    return VideoOcrSettings(fps=fps, region=region, cues=CueSettings(min_confidence=min_confidence))


def _videos(videos, pool, fps, region, min_confidence, fmt, stream, folder, on_error, summary) -> None:
    from mmtk.errors import DataError
    from mmtk.ocr.outputs import atomic_text, cue_file_names
    from mmtk.ocr.video import ocr_video
    from mmtk.ocr.writers import render

    settings = _video_settings(fps, region, min_confidence)
    # Named (and collisions refused) before the first video is read.
    names = cue_file_names(videos, fmt) if folder else [None] * len(videos)
    for video, name in zip(videos, names):
        try:
            with output.progress_bar(video.name) as progress:
                result = ocr_video(video, settings, pool=pool, progress=progress)
        except DataError as error:
            if on_error != OnError.skip:
                raise
            summary["skipped"].append(error.one_line())
            continue
        extra = {"video": str(video)} if fmt == "jsonl" and len(videos) > 1 else {}
        text = render(result.cues, fmt, **extra)
        if folder:
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_text(target) as cue_file:
                cue_file.write(text)
        else:
            stream.write(text)
        summary["videos"].append(result.summary())
        output.log(
            f"{video.name}: {len(result.cues)} cues, {result.ocr_calls} OCR calls for "
            f"{result.frames_sampled} sampled frames, {result.seconds:.1f} s"
        )


def _images(images, pool, stream, on_error, summary) -> None:
    import json

    from mmtk.ocr.images import ocr_images

    with output.progress_bar("images") as progress:
        results, errors = ocr_images(images, pool=pool, on_error=on_error.value, progress=progress)
    for item in results:
        stream.write(json.dumps(item.to_dict(), ensure_ascii=False) + "\n")
    summary["images"] = len(results)
    summary["skipped"].extend(error.one_line() for error in errors)


def _dataset_form(data, fps, region, lang, engine, min_confidence, column, into, workers, on_error, out, json_out, columns) -> None:
    from mmtk.ocr.dataset import ocr_dataset, write_rows

    with output.progress_bar(Path(data).name) as progress:
        result = ocr_dataset(
            data, column=column, into=into, settings=_video_settings(fps, region, min_confidence), engine=engine,
            lang=lang, workers=workers, on_error=on_error.value, progress=progress, **columns,
        )
    write_rows(result, out)
    for line in result.skipped:
        output.warn(f"skipped {line}")
    if json_out:
        output.print_json({
            "dataset": str(result.source), "column": result.column, "into": result.into, "items": len(result.rows),
            "with_text": sum(1 for row in result.rows if row.get(into)), "ocr_calls": result.ocr_calls,
            "skipped": result.skipped, "out": out,
        })


def _output_folder(out: str, videos: int, fmt: str, images: list[Path]) -> Path | None:
    """The folder for one cue file per video, or None to write one stream."""
    path = Path(out)
    if out != "-" and (path.is_dir() or out.endswith(("/", "\\"))):
        if images:
            raise UsageError(
                f"--out {out} is a folder, but image text is written as one JSONL file",
                "pass --out FILE.jsonl for images, and a folder only for videos",
            )
        path.mkdir(parents=True, exist_ok=True)
        return path
    if videos > 1 and fmt != "jsonl":
        raise UsageError(
            f"{videos} videos cannot share one {fmt} file",
            "pass --out FOLDER/ for one file per video, or --format jsonl for one stream",
        )
    return None


@contextmanager
def _output_stream(out: str, folder: Path | None):
    """stdout, nothing (a folder gets one file per video), or the --out file, which is
    replaced only when every input has been read or skipped: a failing input leaves an
    existing file as it was."""
    import sys

    from mmtk.ocr.outputs import atomic_text

    if folder is not None:
        yield None
    elif out == "-":
        yield sys.stdout
        sys.stdout.flush()
    else:
        with atomic_text(out) as stream:
            yield stream
