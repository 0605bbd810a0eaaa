"""Where OCR results go: one cue file per video in an output folder, named after the
video's path below the inputs' common folder, and every output file written whole or
not at all."""

from __future__ import annotations

import errno
import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator, Sequence

from mmtk.errors import UsageError


def cue_file_names(videos: Sequence[Path], suffix: str) -> list[Path]:
    """The relative output path of each video: its path below the folder that holds all
    of them, with ``suffix`` (``videos/a/clip.mp4`` and ``videos/b/clip.mp4`` become
    ``a/clip.srt`` and ``b/clip.srt``). Two videos that would still share a name
    (``clip.mp4`` beside ``clip.mkv``) are refused before any work is done."""
    absolute = [Path(os.path.abspath(v)) for v in videos]
    try:
        root = Path(os.path.commonpath([str(p.parent) for p in absolute]))
    except ValueError:  # Windows: videos on different drives share no folder
        raise UsageError(
            "the videos share no common folder to mirror under --out", "run the videos of each drive separately"
        ) from None
    names: list[Path] = []
    seen: dict[Path, Path] = {}
    for video, path in zip(videos, absolute):
        name = path.relative_to(root).with_suffix(f".{suffix}")
        if name in seen:
            raise UsageError(
                f"{seen[name]} and {video} would both be written to {name}",
                "rename one of them, or run them separately with different --out folders",
            )
        seen[name] = video
        names.append(name)
    return names


@contextmanager
def atomic_text(path: str | Path, newline: str | None = "\n") -> Iterator[IO[str]]:
    """A text stream that replaces ``path`` only when the block ends without an error.

    The text goes to a temp file beside ``path`` (same file system, so the rename is
    atomic); on any exception it is removed and an existing ``path`` keeps its content.
    The new file keeps the old file's permissions; a first one gets those the umask
    gives (the temp file is created 0666 and the kernel applies the umask)."""
    path = Path(path)
    if not path.parent.is_dir():  # the error would otherwise name the temp file
        raise FileNotFoundError(errno.ENOENT, "no such folder", str(path.parent))
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline=newline) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        try:
            os.chmod(temp, path.stat().st_mode & 0o7777)
        except FileNotFoundError:
            pass  # a new file: the umask already applied
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
