"""Exceptions that reach the user as one line, and the exit code each one maps to.

Library code raises these with a message that names the file, line or item and a hint
that says how to fix it. The CLI (``mmtk.cli.errors``) is the one place that turns them
into an exit code and a line on stderr.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2


def first_line(exc: BaseException) -> str:
    """The first line of a third-party exception's message, to quote inside ours.
    FFmpeg (PyAV) errors carry the library's message in ``strerror``; their ``str()``
    adds the errno and the failing call."""
    message = getattr(exc, "strerror", None) or str(exc)
    return (message.strip().splitlines() or [type(exc).__name__])[0]


class MmtkError(Exception):
    """Base class: a problem the user can fix. ``str()`` is the one-line message."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class UsageError(MmtkError):
    """A bad option or argument (unknown name, malformed spec)."""


class DataError(MmtkError):
    """Bad input data: a malformed line, a missing media file, an unknown label."""


class StoreError(MmtkError):
    """The feature store is missing something or cannot be used."""


class CheckFailed(MmtkError):
    """A requested check did not pass (``--fail-under``, ``store verify``): exit code 1."""

    exit_code = EXIT_CHECK_FAILED


#: The source name of a dataset read from a pandas DataFrame (there is no file to name).
FRAME_SOURCE = "<DataFrame>"


class BadInput(ValueError):
    """An item an encoder or decoder cannot use (undecodable image or audio, empty text).
    ``str()`` is the reason; extraction adds the dataset file, line and item id. Not an
    ``MmtkError``: extraction decides per item whether it stops the run or is skipped."""


def where(path, line: int | None = None, item: str | None = None) -> str:
    """Format a location as ``file:line (item id)`` for error messages. Tables (a
    DataFrame, a ``.parquet`` file) have rows, not lines: ``data.parquet row 3 (item ...)``."""
    loc = str(path)
    if line:
        loc += f" row {line}" if loc == FRAME_SOURCE or loc.lower().endswith(".parquet") else f":{line}"
    if item is not None:
        loc += f" (item {item!r})"
    return loc
