"""OCR a dataset's video or image column into a text column of a new dataset."""

from __future__ import annotations

import csv
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mmtk.errors import DataError, UsageError, where
from mmtk.ocr.outputs import atomic_text
from mmtk.ocr.pool import OcrPool
from mmtk.ocr.video import VideoOcrSettings

DEFAULT_INTO = "ocr_text"


@dataclass
class DatasetOcrResult:
    source: Path
    column: str  # the media column that was read
    into: str  # the column the text went into
    rows: list[dict]  # output rows, in input order
    skipped: list[str] = field(default_factory=list)  # one line per bad item
    ocr_calls: int = 0
    media_columns: list[str] = field(default_factory=list)  # written relative to the output


def cue_text(cues) -> str:
    """A video's subtitles as one text: cue texts in order, repeats of the previous cue dropped."""
    lines: list[str] = []
    for cue in cues:
        text = " ".join(cue.text.split())
        if not lines or lines[-1] != text:
            lines.append(text)
    return "\n".join(lines)


def ocr_dataset(
    data: str | Path,
    *,
    column: str | None = None,
    into: str = DEFAULT_INTO,
    settings: VideoOcrSettings = VideoOcrSettings(),
    engine: str = "tesseract",
    lang: str = "eng",
    workers: int | None = None,
    on_error: str = "fail",
    progress: Callable[[int, int], None] | None = None,
    **column_options,
) -> DatasetOcrResult:
    """Read the text in each item's video (or image) and put it into column ``into``.

    ``column`` is a role (``video``, ``image``) or a column name; by default the video
    column, else the image column. When ``into`` already exists (e.g. ``text``), its old
    values are kept in ``<into>_original`` and replaced where OCR found text. Bad media
    raise DataError naming file, line and item (``on_error="fail"``), or their rows are
    left out of the output and listed in ``skipped`` (``"skip"``).
    """
    from mmtk.data import read_dataset
    from mmtk.ocr.images import load_image, read_image_text
    from mmtk.ocr.video import ocr_video

    dataset = read_dataset(data, on_error=on_error, **column_options)
    if column is None:
        column = "video" if dataset.columns.video else "image"
        if not dataset.columns.video and not dataset.columns.image:
            raise UsageError(
                f"{dataset.source} has no video or image column (columns: {', '.join(dataset.column_names)})",
                "name the media column with --column COLUMN",
            )
    name = dataset.column_for(column)
    is_video = (dataset.role_of(name) == "video") or column == "video"
    keep_original = into in dataset.column_names
    result = DatasetOcrResult(
        dataset.source, name, into, [], [item.one_line() for item in dataset.skipped],
        media_columns=[c for c in (dataset.columns.image, dataset.columns.audio, dataset.columns.video) if c],
    )
    with OcrPool(engine, lang, workers) as pool:
        for n, record in enumerate(dataset.records, start=1):
            row = dict(record.values)
            media = row.get(name)
            text = ""
            try:
                if media in (None, ""):
                    raise DataError(f"{where(dataset.source, record.line, record.id)}: empty {name!r}", f"fill in the {name} column")
                try:
                    if is_video:
                        text = cue_text(ocr_video(media, settings, pool=pool).cues)
                    else:
                        text = read_image_text(load_image(Path(media)), pool).text
                except DataError as error:
                    # Name the dataset line as well as the media file.
                    raise DataError(f"{where(dataset.source, record.line, record.id)}: {error.message}", error.hint) from None
            except DataError as error:
                if on_error != "skip":
                    raise
                result.skipped.append(error.one_line())
                continue
            finally:
                if progress is not None:
                    progress(n, len(dataset.records))
            if keep_original:
                row[f"{into}_original"] = row.get(into)
                row[into] = text or row.get(into)
            else:
                row[into] = text
            result.rows.append(row)
        result.ocr_calls = pool.calls
    return result


def write_rows(result: DatasetOcrResult, out: str | Path) -> None:
    """Write the output dataset: CSV for a ``.csv``/``.tsv`` file, JSON Lines otherwise
    (``-`` = stdout). Media paths are written relative to the output file's folder where
    they lie under it, so the new dataset resolves them as the old one did."""
    media = result.media_columns
    base = None if str(out) == "-" else Path(out).resolve().parent
    rows = [{k: _relative(v, base) if k in media else v for k, v in row.items()} for row in result.rows]
    if str(out) == "-":
        _write(rows, sys.stdout, "")
        sys.stdout.flush()
        return
    # Whole or not at all: a failure half-way leaves an existing file as it was.
    with atomic_text(out, newline="") as handle:
        _write(rows, handle, Path(out).suffix.lower())


def _write(rows: list[dict], handle, suffix: str) -> None:
    if suffix in (".csv", ".tsv"):
        header = list(dict.fromkeys(k for row in rows for k in row))
        writer = csv.DictWriter(handle, fieldnames=header, delimiter="\t" if suffix == ".tsv" else ",", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")


def _relative(value, base: Path | None):
    if base is None or not isinstance(value, str) or not os.path.isabs(value):
        return value
    try:
        return Path(value).relative_to(base).as_posix()
    except ValueError:
        return value
