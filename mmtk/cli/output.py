"""Where output goes. Results go to stdout (a table for people, one JSON document with
``--json``); progress bars and logs go to stderr and only when stderr is a terminal, so
pipes and CI logs stay clean. Rich honours ``NO_COLOR`` by itself."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any, Callable, Iterator

from rich.console import Console

_state = {"quiet": False}


def stdout() -> Console:
    return Console(soft_wrap=True)


def stderr() -> Console:
    return Console(stderr=True, soft_wrap=True)


def set_quiet(quiet: bool) -> None:
    _state["quiet"] = quiet


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def log(message: str) -> None:
    """An informational line on stderr, shown only on a terminal and not with --quiet."""
    if not _state["quiet"] and stderr_is_terminal():
        stderr().print(message, highlight=False)


def warn(message: str) -> None:
    """A line the user should see even in CI logs (skipped items, stale entries)."""
    if not _state["quiet"]:
        print(f"warning: {message}", file=sys.stderr)


def warn_skipped(items) -> None:
    """One warning line per skipped item (``BadItem``), so CI logs show what was left out."""
    for item in items:
        warn(f"skipped {item.one_line()}")


def print_fields(fields: dict[str, Any]) -> None:
    """``key: value`` lines on stdout (lists shown by their length), for small reports."""
    console = stdout()
    for key, value in fields.items():
        console.print(f"{key}: {len(value) if isinstance(value, list) else value}", highlight=False, markup=False)


def print_json(document: Any) -> None:
    """Exactly one JSON document on stdout, nothing else."""
    sys.stdout.write(json.dumps(document, indent=2, default=_json_default) + "\n")
    sys.stdout.flush()


def _json_default(obj: Any) -> Any:
    # numpy scalars and paths appear in library results; JSON has no type for them.
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


@contextlib.contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int], None] | None]:
    """Yield a ``progress(done, total)`` callback drawing a bar on stderr, or None when
    stderr is not a terminal or output is quiet (the library then skips reporting)."""
    if _state["quiet"] or not stderr_is_terminal():
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=stderr(),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
