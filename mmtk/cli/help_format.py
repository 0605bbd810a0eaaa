"""How ``--help`` is laid out, the same on every supported Typer version.

mmtk's help is click's plain layout, not Typer's rich panels. The panels level their
widest columns to one width, so at 80 columns an option name of 21 characters
(``--allow-outside-paths``) or a ``binary|multiclass|...`` list was cut with "…"; and
Typer 0.29 shows every flag with a type (``--json <bool>``, which invites ``--json
true``, a command line that is then refused). The plain layout never cuts an option
name, shows flags bare, and needs no colours (so ``NO_COLOR`` and pipes change
nothing).

On top of it, the usage line names arguments as the docs write them (``RUN DATA``,
optional ones in brackets: Typer 0.29 writes ``{run} {data}``), the command list shows
each command's whole first sentence rather than one cut to fit the line, and the
examples in each epilog keep their lines, so they can be copied as printed.
``MmtkTyper`` builds every group and command with these classes.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

# click's marker for "do not rewrap this paragraph".
_KEEP_LINES = "\b"


def argument_usage(param) -> str:
    """``DATA``, ``[WHICH]``, ``INPUTS...``: one argument as the usage line shows it."""
    name = (param.metavar or param.name or "").upper()
    if param.nargs != 1:
        name += "..."
    return name if param.required else f"[{name}]"


def keep_example_lines(epilog: str | None) -> str | None:
    """The epilog with every paragraph marked so click prints its lines as written: an
    example command must not be rewrapped mid-option (``--on-`` / ``error skip``)."""
    if not epilog:
        return epilog
    paragraphs = epilog.strip("\n").split("\n\n")
    return "\n\n".join(p if p.startswith(_KEEP_LINES) else f"{_KEEP_LINES}\n{p}" for p in paragraphs)


class _HelpLayout:
    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []  # type: ignore[attr-defined]
        for param in self.get_params(ctx):  # type: ignore[attr-defined]
            if param.param_type_name == "argument":
                pieces.append(argument_usage(param))
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces


class MmtkCommand(_HelpLayout, TyperCommand):
    """A Typer command with mmtk's help layout."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.epilog = keep_example_lines(self.epilog)


class MmtkGroup(_HelpLayout, TyperGroup):
    """A Typer group with mmtk's help layout."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.epilog = keep_example_lines(self.epilog)

    def collect_usage_pieces(self, ctx) -> list[str]:
        return super().collect_usage_pieces(ctx) + [self.subcommand_metavar]

    def format_commands(self, ctx, formatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                # No length limit: the line wraps instead of ending in "...".
                rows.append((name, command.get_short_help_str(limit=10_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class MmtkTyper(typer.Typer):
    """``typer.Typer`` whose groups and commands use mmtk's help layout."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", MmtkGroup)
        kwargs.setdefault("rich_markup_mode", None)
        super().__init__(**kwargs)

    def command(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("cls", MmtkCommand)
        return super().command(*args, **kwargs)
