"""The one place that turns exceptions into an exit code and a one-line message.

Known problems (``MmtkError`` and the OS errors a user can cause) print
``error: <message>; <how to fix>`` on stderr and exit 2 (1 for failed checks). Anything
else is a bug: one line that says so, and the traceback with ``--debug`` or
``MMTK_DEBUG=1``.
"""

from __future__ import annotations

import errno
import functools
import os
import sys
import time
import traceback
from typing import Callable, TypeVar

import typer

from mmtk.errors import EXIT_BAD_INPUT, MmtkError

F = TypeVar("F", bound=Callable)

EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130

_state = {"debug": False}


def set_debug(debug: bool) -> None:
    _state["debug"] = debug


def debug_enabled() -> bool:
    return _state["debug"] or os.environ.get("MMTK_DEBUG", "") not in ("", "0")


#: Seconds a torchrun rank other than 0 waits before exiting on an error: torchrun ends
#: the other processes as soon as one exits, which could cut rank 0 off before it has
#: printed the error line they all hit.
OTHER_RANK_GRACE_S = 5.0


def _fail(message: str, code: int) -> typer.Exit:
    if other_rank():
        if code != EXIT_INTERRUPTED:  # Ctrl-C reaches every rank at once
            time.sleep(OTHER_RANK_GRACE_S)
        return typer.Exit(code)
    if debug_enabled():
        traceback.print_exc()
    print(f"error: {message}", file=sys.stderr)
    return typer.Exit(code)


def other_rank() -> bool:
    """Whether this is a process of a torchrun launch other than rank 0. Every rank reads
    the same input, so a bad one fails on all of them: rank 0 alone says so, once. (Read
    from the environment here: importing torch for it would slow every error.)"""
    return "WORLD_SIZE" in os.environ and os.environ.get("RANK", "0").strip() not in ("", "0")


def _silence_stdout() -> None:
    # The reader went away (`mmtk predict ... | head`): it has what it wanted. Point
    # stdout at /dev/null so the interpreter's final flush stays quiet.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def closed_pipe_exit(exc: SystemExit) -> bool:
    """Whether ``exc`` is how rich or click reported a closed stdout.

    Rich's console (``on_broken_pipe``) and click's main loop turn ``EPIPE`` into
    ``SystemExit(1)`` inside their ``except`` block, before ``handle_errors`` can see it:
    ``mmtk train ... | head -n 1`` and ``mmtk train --help | head -n 1`` would exit 1, which
    means "a check failed". The exception they were handling stays on ``__context__``."""
    cause = exc.__context__
    return exc.code == 1 and isinstance(cause, OSError) and cause.errno == errno.EPIPE


def run(app) -> None:
    """Run the Typer app as the ``mmtk`` program: a closed stdout exits 0 quietly."""
    try:
        app()
    except SystemExit as exc:
        if closed_pipe_exit(exc):
            _silence_stdout()
            raise SystemExit(0) from None
        raise


def handle_errors(command: F) -> F:
    """Decorator for every command function."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except typer.Exit:
            raise
        except BrokenPipeError:
            _silence_stdout()
            raise typer.Exit(0) from None
        except MmtkError as exc:
            raise _fail(exc.one_line(), exc.exit_code) from None
        except FileNotFoundError as exc:
            raise _fail(f"{exc.filename or exc}: no such file or directory; check the path", EXIT_BAD_INPUT) from None
        except PermissionError as exc:
            raise _fail(f"{exc.filename or exc}: permission denied; check the file's permissions", EXIT_BAD_INPUT) from None
        except KeyboardInterrupt:
            raise _fail("interrupted; committed work is kept, run the command again to finish", EXIT_INTERRUPTED) from None
        except Exception as exc:  # a bug in mmtk, not the user's input
            raise _fail(
                f"internal error: {type(exc).__name__}: {exc} "
                "(this is a bug in mmtk; rerun with --debug for the traceback and report it)",
                EXIT_INTERNAL,
            ) from None

    return wrapper  # type: ignore[return-value]
