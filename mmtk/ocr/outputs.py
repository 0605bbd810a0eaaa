"""Where OCR results go: one cue file per video in an output folder, named after the
video's path below the inputs' common folder, and every output file written whole or
not at all."""

from __future__ import annotations

import errno
import os
import tempfile
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
    The new file gets the old file's permissions, or those the umask gives a new file."""
    path = Path(path)
    if not path.parent.is_dir():  # mkstemp's own error would name the temp file
        raise FileNotFoundError(errno.ENOENT, "no such folder", str(path.parent))
    mode = _mode_for(path)
    descriptor, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline=newline) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _mode_for(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        # mkstemp makes 0600 files; a plain open() would have followed the umask.
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
