"""Read a dataset (CSV, JSONL, a JSON array, Parquet, a pandas DataFrame, stdin, or a
folder) into a validated ``Dataset``.

Reading happens in two steps: a format parser turns the file into rows that each carry
the line they start on (or the reason the line is malformed), then ``_build`` resolves
the column roles, assigns ids, resolves media paths and checks every requirement, so
every format reports problems the same way: ``file:line (item 'id'): reason; fix``.

Images are not decoded here (that would make reading as slow as extraction); an
unreadable image is reported by the extraction code, which decodes it anyway.

Media paths and the dataset's folder: a relative path must stay inside the folder it
resolves against (the dataset file's folder, or ``root``), so a dataset cannot quietly
reach ``../../x.jpg`` and stays portable when its folder is copied; absolute paths are
accepted, because the dataset's author wrote them out explicitly (user-made datasets
often list ``/data/images/...``). ``allow_outside_paths=True`` (``--allow-outside-paths``)
accepts relative paths that leave the folder. The check is on the written path with
``..`` collapsed, not on symlinks: a link placed inside the folder is the owner's choice,
like an absolute path.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from mmtk.data.records import MEDIA_ROLES, ROLES, BadItem, Columns, Dataset, Record
from mmtk.data.tables import frame_rows, is_frame, read_parquet
from mmtk.errors import FRAME_SOURCE, DataError, UsageError, where

if TYPE_CHECKING:
    import pandas as pd

# A data file's format by extension. A `.json` file may hold JSON lines or one array.
DATA_FORMATS = {
    ".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet",
}
# Inside a folder only these count as "the dataset file": a `.json` there is more often
# metadata (e.g. a column description) than data.
FOLDER_DATA_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".parquet")
OUTSIDE_HINT = "move the file into that folder, write its absolute path, or pass --allow-outside-paths"

MEDIA_SUFFIXES = {
    **dict.fromkeys((".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"), "image"),
    **dict.fromkeys((".wav", ".flac", ".mp3", ".ogg"), "audio"),
    **dict.fromkeys((".mp4", ".avi", ".mov", ".mkv", ".webm"), "video"),
}

# Column names that play each role when the user names none, best first.
CONVENTIONAL_COLUMNS = {
    "id": ("id",),
    "image": ("image", "img"),
    "text": ("text",),
    "audio": ("audio",),
    "video": ("video",),
}

ON_ERROR_CHOICES = ("fail", "skip")
STDIN_NAME = "<stdin>"


@dataclass
class _Row:
    """One parsed line: its values, or why it could not be parsed."""

    line: int
    values: dict[str, Any] | None
    problem: str | None = None
    hint: str | None = None
    item_id: str | None = None  # set by the folder reader, where the id is the file path


def read_dataset(
    path: str | os.PathLike | pd.DataFrame,
    *,
    id_column: str | None = None,
    image_column: str | None = None,
    text_column: str | None = None,
    audio_column: str | None = None,
    video_column: str | None = None,
    require: Iterable[str] = (),
    on_error: str = "fail",
    root: str | os.PathLike | None = None,
    allow_outside_paths: bool = False,
    optional: Iterable[str] = (),
) -> Dataset:
    """Read and validate a dataset.

    ``path`` is a ``.csv``/``.tsv``/``.jsonl``/``.json``/``.parquet`` file, ``-`` for
    JSONL on stdin, a folder (its single top-level CSV/JSONL/Parquet file, or else one
    item per media file under it: id = relative path, role from the extension, a
    same-name ``.txt`` file as its ``text``), or a ``pandas.DataFrame`` (one item per
    row; its source in messages is ``<DataFrame>``). Parquet files and DataFrames are
    tables: messages name rows (``data.parquet row 3``, counted from 1) where text files
    name lines.

    Columns play roles by convention (``id``; ``image`` or ``img``; ``text``; ``audio``;
    ``video``; case-insensitive) unless named by the ``*_column`` arguments. Without an
    id column, an item's id is its 0-based position among the file's data rows, as a
    string. Ids are always strings. Relative media paths resolve against ``root``
    (default: the dataset file's folder; the working directory for stdin and DataFrames)
    and are stored as absolute path strings. A relative path that leaves that folder
    (``../x.jpg``) is a bad item unless ``allow_outside_paths``; absolute paths are
    accepted (see the module docstring for why).

    ``require`` lists roles or column names that every record must have non-empty;
    required media files must exist; ``"audio"`` with no audio column requires the video
    column (its audio track is read then). Malformed lines, duplicate ids and unmet
    requirements raise ``DataError`` naming file and line (``on_error="fail"``), or are
    listed in ``dataset.skipped`` while the good records are kept (``"skip"``).
    ``optional`` lists roles or columns that must exist but whose cells may be blank
    (an absent modality, for ``train --missing-modality``); a filled media cell must
    still name an existing file.
    """
    if on_error not in ON_ERROR_CHOICES:
        raise UsageError(f"unknown on_error {on_error!r}", f"use one of: {', '.join(ON_ERROR_CHOICES)}")
    if isinstance(require, str):
        require = (require,)
    optional = tuple(name for name in ((optional,) if isinstance(optional, str) else optional) if name not in require)
    require = (*require, *((name, True) for name in optional))
    given = {"id": id_column, "image": image_column, "text": text_column, "audio": audio_column, "video": video_column}
    settings = _Settings(given, tuple(require), on_error, allow_outside_paths)

    def media_root(default: Path) -> Path:
        # abspath, not Path.absolute(): `..` must be collapsed for the inside-the-folder check.
        return Path(os.path.abspath(root if root is not None else default))

    if is_frame(path):
        header, rows = _table_rows(*frame_rows(path))
        return _build(Path(FRAME_SOURCE), media_root(Path.cwd()), header, rows, settings, folder=False)
    if str(path) == "-":
        if sys.stdin.isatty():
            raise UsageError("'-' reads JSONL from stdin, but stdin is a terminal", "pipe a file in, e.g. cat data.jsonl | mmtk ...")
        header, rows = _parse_jsonl(sys.stdin.read())
        return _build(Path(STDIN_NAME), media_root(Path.cwd()), header, rows, settings, folder=False)

    location = Path(path)
    if not location.exists():
        raise DataError(
            f"dataset {location} not found",
            "check the path; a dataset is a .csv or .jsonl file, a folder, or - for JSONL on stdin",
        )
    if location.is_dir():
        data_file = _single_data_file(location)
        if data_file is None:
            header, rows = _scan_media_folder(location)
            return _build(location, media_root(location), header, rows, settings, folder=True)
        location = data_file
    header, rows = _parse_file(location)
    return _build(location, media_root(location.absolute().parent), header, rows, settings, folder=False)


# --- format parsers: text -> (column names, rows) ---------------------------------------


def _parse_file(path: Path) -> tuple[list[str], list[_Row]]:
    fmt = DATA_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UsageError(
            f"{path}: unknown dataset format {path.suffix or '(no extension)'!r}",
            f"use one of: {', '.join(DATA_FORMATS)}, or a folder",
        )
    if fmt == "parquet":
        return _table_rows(*read_parquet(path))
    text = _read_text(path)
    if fmt in ("csv", "tsv"):
        return _parse_csv(text, str(path), delimiter="," if fmt == "csv" else "\t")
    if fmt == "json" and text.lstrip().startswith("["):
        return _parse_json_array(text, str(path))
    return _parse_jsonl(text)


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")  # -sig: spreadsheet exports often start with a BOM
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(f"{where(path, line)}: not UTF-8 text", "save the file as UTF-8") from None


def _parse_csv(text: str, source: str, delimiter: str) -> tuple[list[str], list[_Row]]:
    # strict=True turns a stray quote or an unterminated quoted field into an error for
    # that row instead of silently swallowing the rest of the file into one field.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header: list[str] | None = None
    rows: list[_Row] = []
    last_line = 0  # reader.line_num after the previous row: a row starts on the next line
    while True:
        start = last_line + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            last_line = reader.line_num
            if header is None:
                raise DataError(f"{where(source, start)}: malformed CSV header: {exc}", "fix the quoting of the header") from None
            rows.append(_Row(start, None, f"malformed CSV row: {exc}", "fix the quoting of this row"))
            continue
        last_line = reader.line_num
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue  # blank line
        if header is None:
            header = [name.strip() for name in fields]
            _check_header(header, source)
            continue
        if len(fields) != len(header):
            rows.append(
                _Row(
                    start,
                    None,
                    f"malformed CSV row: {len(fields)} fields, the header has {len(header)}",
                    "quote fields that contain the delimiter or line breaks",
                )
            )
            continue
        rows.append(_Row(start, dict(zip(header, fields))))
    if header is None:
        raise DataError(f"{source} is empty", "a CSV dataset needs a header line and one row per item")
    return header, rows


def _table_rows(header: list[str], rows: list[tuple[int, dict[str, Any]]]) -> tuple[list[str], list[_Row]]:
    """A table's rows (``mmtk.data.tables``) as parsed rows, numbered from 1."""
    return header, [_Row(number, values) for number, values in rows]


def _check_header(header: list[str], source: str) -> None:
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise DataError(f"{where(source, 1)}: column {name!r} appears twice in the header", "rename one of them")
        seen.add(name)


def _parse_jsonl(text: str) -> tuple[list[str], list[_Row]]:
    rows: list[_Row] = []
    # split on "\n" only: str.splitlines() also splits on U+2028 and friends, which
    # JSON allows unescaped inside strings, and would shift every line number after it.
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.strip()
        if not line:
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            rows.append(_Row(number, None, f"malformed JSON: {exc.msg} (column {exc.colno})", "write one JSON object per line"))
            continue
        rows.append(_object_row(number, value))
    return _columns_seen(rows), rows


_JSON_WHITESPACE = re.compile(r"\s*")


def _parse_json_array(text: str, source: str) -> tuple[list[str], list[_Row]]:
    """A ``[{...}, {...}]`` file, decoded element by element so each keeps its line."""
    decoder = json.JSONDecoder()
    rows: list[_Row] = []
    position = _JSON_WHITESPACE.match(text, text.index("[") + 1).end()
    line, counted_to = 1, 0

    def line_at(offset: int) -> int:
        nonlocal line, counted_to
        line += text.count("\n", counted_to, offset)
        counted_to = offset
        return line

    if text.startswith("]", position):
        return [], rows
    while True:
        start_line = line_at(position)
        try:
            value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            # Unlike JSONL there is no next line to resume at, so this stops the read.
            raise DataError(f"{where(source, exc.lineno)}: malformed JSON: {exc.msg}", "fix the JSON array") from None
        rows.append(_object_row(start_line, value))
        position = _JSON_WHITESPACE.match(text, position).end()
        if text.startswith(",", position):
            position = _JSON_WHITESPACE.match(text, position + 1).end()
            continue
        if text.startswith("]", position):
            return _columns_seen(rows), rows
        raise DataError(f"{where(source, line_at(position))}: malformed JSON: expected ',' or ']'", "fix the JSON array")


def _object_row(line: int, value: Any) -> _Row:
    if isinstance(value, dict):
        return _Row(line, value)
    kind = {list: "a list", str: "a string", type(None): "null", bool: "a boolean"}.get(type(value), "a number")
    return _Row(line, None, f"expected a JSON object, got {kind}", 'write each item as {"column": value, ...}')


def _columns_seen(rows: list[_Row]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows:
        for name in row.values or ():
            seen.setdefault(name, None)
    return list(seen)


# --- folders ---------------------------------------------------------------------------


def _single_data_file(folder: Path) -> Path | None:
    candidates = sorted(
        entry
        for entry in folder.iterdir()
        if entry.is_file() and entry.suffix.lower() in FOLDER_DATA_SUFFIXES and not entry.name.startswith(".")
    )
    if len(candidates) > 1:
        names = ", ".join(entry.name for entry in candidates)
        raise UsageError(f"{folder} holds several dataset files ({names})", "pass one of them instead of the folder")
    return candidates[0] if candidates else None


def _scan_media_folder(folder: Path) -> tuple[list[str], list[_Row]]:
    """One row per media file under ``folder`` (hidden files and folders ignored)."""
    found = []
    for entry in folder.rglob("*"):
        relative = entry.relative_to(folder)
        role = MEDIA_SUFFIXES.get(entry.suffix.lower())
        if role and entry.is_file() and not any(part.startswith(".") for part in relative.parts):
            found.append((relative.as_posix(), role, entry))
    if not found:
        raise DataError(
            f"{folder} holds no dataset file and no media files",
            f"put one .csv or .jsonl file in it, or media files ({', '.join(MEDIA_SUFFIXES)})",
        )
    rows = []
    for relative, role, entry in sorted(found, key=lambda item: item[0]):
        values: dict[str, Any] = {role: str(entry.absolute())}
        sidecar = entry.with_suffix(".txt")
        if sidecar.is_file():
            values["text"] = _read_text(sidecar).strip()
        rows.append(_Row(0, values, item_id=relative))
    roles_present = {role for _, role, _ in found}
    header = [role for role in MEDIA_ROLES if role in roles_present] + ["text"]
    return header, rows


# --- validation ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Settings:
    """What the caller asked of the dataset, as ``read_dataset`` received it."""

    given: dict[str, str | None]  # role -> column named by the caller
    require: tuple[str, ...]
    on_error: str
    allow_outside_paths: bool


@dataclass(frozen=True)
class _Requirement:
    column: str
    label: str  # how messages name it: the role ("text") or "column 'price'"
    is_media: bool
    blank_ok: bool = False  # an optional modality: a blank cell is an absent one


class _Problems:
    """Raises the first problem (``fail``) or collects every one (``skip``)."""

    def __init__(self, source: Path, on_error: str):
        self.source = str(source)
        self.on_error = on_error
        self.skipped: list[BadItem] = []

    def report(self, line: int, item: str | None, reason: str, hint: str | None) -> None:
        bad = BadItem(self.source, line, item, reason)
        if self.on_error == "fail":
            raise DataError(bad.one_line(), hint)
        self.skipped.append(bad)


def _build(source: Path, root: Path, header: list[str], rows: list[_Row], settings: _Settings, *, folder: bool) -> Dataset:
    problems = _Problems(source, settings.on_error)
    if not header:
        # No column at all: the file is empty, or every row is malformed or `{}`. Say
        # that, rather than that some column is missing from "(none)".
        if not rows:
            raise DataError(f"{source} is empty", "write one JSON object per line, or a CSV header and one row per item")
        for row in rows:
            if row.values is None:
                problems.report(row.line, None, row.problem or "malformed line", row.hint)
        if problems.skipped:
            raise _no_usable_records(source, problems)
        raise DataError(f"{source} holds no columns: every item is an empty object", 'write each item as {"column": value, ...}')
    columns = _resolve_columns(header, settings.given, source)
    requirements = _resolve_requirements(settings.require, columns, header, source)
    media_columns = [column for column in (columns.image, columns.audio, columns.video) if column is not None]
    records: list[Record] = []
    first_line_of: dict[str, int] = {}

    for position, row in enumerate(rows):
        if row.values is None:
            problems.report(row.line, None, row.problem or "malformed line", row.hint)
            continue
        values = dict(row.values)
        if row.item_id is not None:
            item_id = row.item_id
        elif columns.id is None:
            item_id = str(position)
        else:
            item_id = _id_string(values.get(columns.id))
            if item_id is None:
                problems.report(row.line, None, "missing id", "give every row an id, or drop the id column to number rows automatically")
                continue
        if item_id in first_line_of:
            problems.report(
                row.line,
                item_id,
                f"duplicate id {item_id!r} (first on line {first_line_of[item_id]})",
                "ids must be unique; rename or remove one of the rows",
            )
            continue
        first_line_of[item_id] = row.line

        as_written = {}
        for column in media_columns:
            value = values.get(column)
            if isinstance(value, str) and value.strip():
                as_written[column] = value.strip()
                values[column] = os.path.abspath(os.path.join(root, value.strip()))

        problem = None if settings.allow_outside_paths else _outside_path(values, as_written, root, columns)
        problem = problem or _unmet_requirement(values, as_written, requirements, folder, item_id)
        if problem is not None:
            problems.report(row.line, item_id, *problem)
            continue
        records.append(Record(item_id, row.line, values))

    if not records:
        if problems.skipped:
            raise _no_usable_records(source, problems)
        raise DataError(f"{source} holds no records", "add one item per line (CSV: below the header)")
    return Dataset(source=source, root=root, records=records, columns=columns, skipped=problems.skipped)


def _no_usable_records(source: Path, problems: _Problems) -> DataError:
    return DataError(
        f"no usable records in {source}: all {len(problems.skipped)} were skipped",
        f"first problem: {problems.skipped[0].one_line()}",
    )


def _resolve_columns(header: list[str], given: dict[str, str | None], source: Path) -> Columns:
    chosen: dict[str, str | None] = {}
    for role, name in given.items():
        if name is not None and name not in header:
            raise UsageError(
                f"{role} column {name!r} not found in {source} (columns: {', '.join(header) or '(none)'})",
                "name one of the listed columns",
            )
        chosen[role] = name if name is not None else _conventional_column(role, header)
    return Columns(**chosen)


def _conventional_column(role: str, header: list[str]) -> str | None:
    for candidate in CONVENTIONAL_COLUMNS[role]:
        if candidate in header:
            return candidate
    by_lower = {name.lower(): name for name in header}
    for candidate in CONVENTIONAL_COLUMNS[role]:
        if candidate in by_lower:
            return by_lower[candidate]
    return None


def _resolve_requirements(require: Iterable[str], columns: Columns, header: list[str], source: Path) -> list[_Requirement]:
    media = {columns.for_role(role): role for role in MEDIA_ROLES if columns.for_role(role) is not None}
    role_of = {columns.for_role(role): role for role in ROLES if columns.for_role(role) is not None}
    requirements = []
    for name in require:
        name, blank_ok = name if isinstance(name, tuple) else (name, False)
        if name in ROLES:
            column = columns.for_role(name)
            if column is None and name == "audio":
                # Audio backbones read the video's audio track when there is no audio
                # column (mmtk.features.pick_column), so the video column must be filled.
                column = columns.video
            if column is None:
                raise UsageError(
                    f"{source} has no {name} column (columns: {', '.join(header) or '(none)'})",
                    f"name it with --{name}-column COLUMN",
                )
        elif name in header:
            column = name
        else:
            raise UsageError(
                f"{source} has no column {name!r} (columns: {', '.join(header) or '(none)'})",
                "name one of the listed columns",
            )
        label = role_of.get(column, f"column {column!r}")
        requirements.append(_Requirement(column, label, column in media, blank_ok))
    return requirements


def _outside_path(values: dict[str, Any], as_written: dict[str, str], root: Path, columns: Columns) -> tuple[str, str] | None:
    """(reason, hint) when a relative media path leaves ``root`` (see the module docstring)."""
    for column, written in as_written.items():
        if os.path.isabs(written):
            continue
        resolved = values[column]
        if os.path.commonpath([resolved, str(root)]) != str(root):
            role = next(role for role in MEDIA_ROLES if columns.for_role(role) == column)
            return f"{role} path {written} leaves the dataset's folder {root} (it resolves to {resolved})", OUTSIDE_HINT
    return None


def _unmet_requirement(
    values: dict[str, Any], as_written: dict[str, str], requirements: list[_Requirement], folder: bool, item_id: str
) -> tuple[str, str] | None:
    """(reason, hint) for the first requirement this record fails, else None."""
    for need in requirements:
        value = values.get(need.column)
        if _is_blank(value) and need.blank_ok:
            continue
        if _is_blank(value):
            state = "missing" if value is None else "empty"
            if folder:
                hint = f"add {Path(item_id).with_suffix('.txt').as_posix()} next to it" if need.label == "text" else "drop the file"
            else:
                hint = "fill it in or drop the row"
            return f"{state} {need.label}", hint
        if need.is_media:
            if not isinstance(value, str):
                return f"{need.label} value {value!r} is not a file path", "write the file's path, relative to the dataset file"
            if not os.path.isfile(value):
                return (
                    f"{need.label} {as_written.get(need.column, value)} not found (looked for {value})",
                    "fix the path (relative paths start at the dataset file's folder) or drop the row",
                )
    return None


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _id_string(value: Any) -> str | None:
    """Ids are strings: 42 in JSONL and "42" in CSV name the same item."""
    if _is_blank(value):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()
