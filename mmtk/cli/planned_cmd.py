"""Commands whose implementation is tracked in open issues. They exist so that scripts and
completions see the final command set, and answer with exit code 2 and a clear line."""

from __future__ import annotations

from typing import Annotated

import typer

from mmtk.errors import UsageError
from mmtk.cli.errors import handle_errors

DISTILL_EXAMPLE = "Example (planned):\n\n  mmtk distill memes.jsonl --teacher visualbert --student tinybert --msd meta --out runs/student"


@handle_errors
def distill_command(
    args: Annotated[list[str] | None, typer.Argument(help="Arguments of the planned command.")] = None,
) -> None:
    """Distill a teacher run into a small student with modality-specific distillation (not built yet)."""
    raise UsageError("mmtk distill is not built yet in this version", "train a student directly with `mmtk train`")
